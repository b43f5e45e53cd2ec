"""The durable job outbox: the chat graph's deferred `schedule_enrichment` node writes here, workers read.

Delivery is at-least-once: a claimed job whose lease expires (worker crashed) is claimed again, so handlers
must be idempotent. SQLite is the embedded default; `stores.outbox_redis` serves many machines.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from hippograph.stores.files import private_file
from hippograph.stores.scrub import scrub


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class RetryPolicy:
    """How long a failed job waits before its next attempt: exponential back-off with jitter.

    Attempt n waits `base * 2**(n-1)` seconds (capped at `cap`), scaled by a random factor in [0.5, 1] so
    jobs that failed together (a backend that was down) do not all come back at the same instant.
    """

    base: float = 2.0
    cap: float = 300.0
    max_attempts: int = 5

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return ceiling * (rng or random).uniform(0.5, 1.0)


class Job(BaseModel):
    id: str
    kind: str
    payload: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    last_error: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    lease_until: float = 0.0
    available_at: float = 0.0
    """A failed attempt's retry is not claimed before this time (exponential back-off with jitter)."""


@runtime_checkable
class Outbox(Protocol):
    def enqueue(self, kind: str, payload: dict[str, Any], *, dedup_key: str | None = None) -> str:
        """Add a job; with `dedup_key`, enqueuing the same key twice returns the first job's id."""
        ...

    def claim(self, *, worker: str, lease_seconds: float = 60.0, kinds: Sequence[str] | None = None) -> Job | None:
        """Take the oldest pending job (or one whose lease expired) and mark it running."""
        ...

    def extend(self, job_id: str, *, worker: str, lease_seconds: float = 60.0) -> None:
        """Keep a long job's lease alive (the worker's heartbeat), so nobody else claims it meanwhile."""
        ...

    def complete(self, job_id: str) -> None:
        ...

    def fail(self, job_id: str, error: str, *, retry: bool = True, max_attempts: int = 5,
             retry_in: float = 0.0) -> None:
        """Record a failed attempt: back to pending (claimable after `retry_in` seconds) or, out of attempts
        or with `retry=False`, failed for good."""
        ...

    def retry(self, job_id: str) -> bool:
        """Requeue a failed job (or a pending one waiting out its back-off) now, with a fresh set of attempts.
        Returns False for an unknown, running or done job."""
        ...

    def purge(self, *, user_id: str | None = None, cube_ids: Sequence[str] = (), memory_ids: Sequence[str] = (),
              thread_ids: Sequence[str] = ()) -> list[str]:
        """Delete for good every job of the user, of the cubes or about the memories (erasure: payloads hold
        message text). Returns the deleted job ids (their enrichment checkpoints go too)."""
        ...

    def get(self, job_id: str) -> Job | None:
        ...

    def list(self, *, status: JobStatus | None = None, limit: int = 100) -> list[Job]:
        ...

    def counts(self) -> dict[str, int]:
        ...


def job_touches(payload: dict[str, Any], *, user_id: str | None = None, cube_ids: Sequence[str] = (),
                memory_ids: Sequence[str] = (), thread_ids: Sequence[str] = ()) -> bool:
    """Whether a job's payload belongs to the user, one of the cubes, memories or chat threads being erased
    (a thread's job carries the turn's answer, which may quote what was recalled from an erased cube)."""
    return bool(
        (user_id is not None and payload.get("user_id") == user_id)
        or payload.get("cube_id") in set(cube_ids)
        or set(payload.get("memory_ids") or ()) & set(memory_ids)
        or payload.get("thread_id") in set(thread_ids)
    )


class SqliteOutbox:
    """Jobs in one SQLite table (WAL): safe for many threads and processes on one machine."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            private_file(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA secure_delete=ON")  # purged payloads leave no bytes in free pages
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS jobs (
                id TEXT PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL, dedup_key TEXT UNIQUE,
                status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',
                created_at REAL NOT NULL, updated_at REAL NOT NULL, lease_until REAL NOT NULL DEFAULT 0,
                worker TEXT NOT NULL DEFAULT '', available_at REAL NOT NULL DEFAULT 0
            );
            CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created_at);
            """
        )
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(jobs)")}
        if "available_at" not in columns:  # an outbox written before retries backed off
            self._conn.execute("ALTER TABLE jobs ADD COLUMN available_at REAL NOT NULL DEFAULT 0")

    def _row(self, row: tuple[Any, ...]) -> Job:
        id_, kind, payload, status, attempts, err, created, updated, lease, available = row
        return Job(id=id_, kind=kind, payload=json.loads(payload), status=JobStatus(status), attempts=attempts,
                   last_error=err, created_at=created, updated_at=updated, lease_until=lease,
                   available_at=available)

    _COLS = "id, kind, payload, status, attempts, last_error, created_at, updated_at, lease_until, available_at"

    def enqueue(self, kind: str, payload: dict[str, Any], *, dedup_key: str | None = None) -> str:
        job_id, ts = str(uuid.uuid4()), time.time()
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO jobs (id, kind, payload, dedup_key, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (job_id, kind, json.dumps(payload), dedup_key, ts, ts),
            )
            if dedup_key is not None:
                row = self._conn.execute("SELECT id FROM jobs WHERE dedup_key = ?", (dedup_key,)).fetchone()
                return str(row[0])
        return job_id

    def claim(self, *, worker: str, lease_seconds: float = 60.0, kinds: Sequence[str] | None = None) -> Job | None:
        ts = time.time()
        kind_sql = f" AND kind IN ({','.join('?' * len(kinds))})" if kinds else ""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    f"SELECT {self._COLS} FROM jobs WHERE ((status = 'pending' AND available_at <= ?) OR "
                    f"(status = 'running' AND lease_until < ?)){kind_sql} ORDER BY created_at LIMIT 1",
                    (ts, ts, *(kinds or ())),
                ).fetchone()
                if row is None:
                    self._conn.execute("COMMIT")
                    return None
                self._conn.execute(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = ?, "
                    "updated_at = ?, worker = ? WHERE id = ?",
                    (ts + lease_seconds, ts, worker, row[0]),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        job = self._row(row)
        job.status, job.attempts, job.lease_until = JobStatus.RUNNING, job.attempts + 1, ts + lease_seconds
        return job

    def extend(self, job_id: str, *, worker: str, lease_seconds: float = 60.0) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND status = 'running' AND worker = ?",
                (time.time() + lease_seconds, job_id, worker),
            )

    def complete(self, job_id: str) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE jobs SET status = 'done', updated_at = ?, lease_until = 0 WHERE id = ?",
                (time.time(), job_id),
            )

    def fail(self, job_id: str, error: str, *, retry: bool = True, max_attempts: int = 5,
             retry_in: float = 0.0) -> None:
        ts = time.time()
        with self._lock:
            row = self._conn.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            again = retry and row[0] < max_attempts
            self._conn.execute(
                "UPDATE jobs SET status = ?, last_error = ?, updated_at = ?, lease_until = 0, available_at = ? "
                "WHERE id = ?",
                ("pending" if again else "failed", error[:2000], ts, ts + max(0.0, retry_in) if again else 0.0,
                 job_id),
            )

    def retry(self, job_id: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "UPDATE jobs SET status = 'pending', attempts = 0, available_at = 0, lease_until = 0, "
                "updated_at = ? WHERE id = ? AND status IN ('failed', 'pending')",
                (time.time(), job_id),
            )
        return cur.rowcount > 0

    def purge(self, *, user_id: str | None = None, cube_ids: Sequence[str] = (), memory_ids: Sequence[str] = (),
              thread_ids: Sequence[str] = ()) -> list[str]:
        with self._lock:
            rows = self._conn.execute("SELECT id, payload FROM jobs").fetchall()
            doomed = [job_id for job_id, payload in rows
                      if job_touches(json.loads(payload), user_id=user_id, cube_ids=cube_ids, memory_ids=memory_ids,
                                     thread_ids=thread_ids)]
            self._conn.executemany("DELETE FROM jobs WHERE id = ?", [(j,) for j in doomed])
            scrub(self._conn)  # also older copies of payloads that finished jobs left in the file
        return doomed

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {self._COLS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row) if row else None

    def list(self, *, status: JobStatus | None = None, limit: int = 100) -> list[Job]:
        sql, params = f"SELECT {self._COLS} FROM jobs", []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(JobStatus(status).value)
        sql += " ORDER BY created_at DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*params, limit)).fetchall()
        return [self._row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
        counts = {s.value: 0 for s in JobStatus}
        counts.update({s: int(n) for s, n in rows})
        return counts

    def close(self) -> None:
        with self._lock:
            self._conn.close()
