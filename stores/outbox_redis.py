"""The job outbox on Redis Streams with consumer groups: many workers on many machines, one interface.

Layout (all keys under `prefix`):
- `{p}:stream:{kind}`  one stream per job kind; each entry carries a job id. Consumer group `{p}:workers`.
- `{p}:job:{id}`       a hash with the job record (kind, payload, status, attempts, last_error, timestamps).
- `{p}:jobs`           a sorted set of job ids by creation time (listing, counts).
- `{p}:dedup:{key}`    job id for a dedup key (`SET NX`), so enqueuing the same key twice is one job.
- `{p}:kinds`          the set of kinds seen (so `claim` without `kinds` reads every stream).
- `{p}:delayed:{kind}` a sorted set of job ids waiting out a retry back-off, scored by when they are due.

Claiming first takes over a delivered entry whose job lease ran out (`XPENDING` + `XCLAIM` guarded by the
observed idle time, so two workers never both win), else reads a new entry with `XREADGROUP`: a crashed
worker's job is delivered again (at-least-once; handlers are idempotent). `complete` acknowledges the entry;
`fail` with retry acknowledges it and parks the job in the delayed set; `claim` moves due jobs back onto the
stream (`ZREM` decides which worker does it, so a job is appended once).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from hippograph.stores.errors import BackendUnavailableError
from hippograph.stores.outbox import Job, JobStatus, job_touches

_GROUP = "workers"
#: An entry read but never marked running (its reader died in between) is taken over after this long.
_READ_GRACE_MS = 30_000


class RedisOutbox:
    """`Outbox` on Redis Streams (consumer groups)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "hippograph", client: Any = None
                 ) -> None:
        import redis

        self.prefix = prefix
        self._redis: Any = client or redis.Redis.from_url(url, decode_responses=True)
        try:
            self._redis.ping()
        except redis.exceptions.ConnectionError as exc:
            raise BackendUnavailableError(f"cannot reach Redis at {url}: {exc}") from exc
        self._groups: set[str] = set()

    # -- keys ---------------------------------------------------------------------------------------------

    def _stream(self, kind: str) -> str:
        return f"{self.prefix}:stream:{kind}"

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    @property
    def _group(self) -> str:
        return f"{self.prefix}:{_GROUP}"

    def _ensure_group(self, kind: str) -> None:
        if kind in self._groups:
            return
        import redis

        try:
            self._redis.xgroup_create(self._stream(kind), self._group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(kind)

    def _delayed(self, kind: str) -> str:
        return f"{self.prefix}:delayed:{kind}"

    def _job(self, data: dict[str, str]) -> Job:
        return Job(
            id=data["id"], kind=data["kind"], payload=json.loads(data.get("payload") or "{}"),
            status=JobStatus(data.get("status", "pending")), attempts=int(data.get("attempts", 0)),
            last_error=data.get("last_error", ""), created_at=float(data.get("created_at", 0)),
            updated_at=float(data.get("updated_at", 0)), lease_until=float(data.get("lease_until", 0)),
            available_at=float(data.get("available_at", 0)),
        )

    def _release_due(self, kind: str) -> None:
        """Put retries whose back-off has passed back on the stream (once each: only one ZREM wins)."""
        for job_id in self._redis.zrangebyscore(self._delayed(kind), "-inf", time.time(), start=0, num=100):
            if self._redis.zrem(self._delayed(kind), job_id):
                self._redis.xadd(self._stream(kind), {"job": job_id})

    # -- protocol -----------------------------------------------------------------------------------------

    def enqueue(self, kind: str, payload: dict[str, Any], *, dedup_key: str | None = None) -> str:
        job_id, ts = str(uuid.uuid4()), time.time()
        if dedup_key is not None:
            key = f"{self.prefix}:dedup:{dedup_key}"
            if not self._redis.set(key, job_id, nx=True):
                return str(self._redis.get(key))
        self._ensure_group(kind)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._job_key(job_id), mapping={
            "id": job_id, "kind": kind, "payload": json.dumps(payload), "status": JobStatus.PENDING.value,
            "attempts": 0, "last_error": "", "created_at": ts, "updated_at": ts, "lease_until": 0,
            "worker": "", "dedup_key": dedup_key or "",
        })
        pipe.zadd(f"{self.prefix}:jobs", {job_id: ts})
        pipe.sadd(f"{self.prefix}:kinds", kind)
        pipe.xadd(self._stream(kind), {"job": job_id})
        pipe.execute()
        return job_id

    def _kinds(self, kinds: Sequence[str] | None) -> list[str]:
        if kinds:
            return list(kinds)
        return sorted(self._redis.smembers(f"{self.prefix}:kinds"))

    def claim(self, *, worker: str, lease_seconds: float = 60.0, kinds: Sequence[str] | None = None) -> Job | None:
        for kind in self._kinds(kinds):
            self._ensure_group(kind)
            self._release_due(kind)
            stream = self._stream(kind)
            entries = self._expired(stream, worker)
            while True:
                if not entries:  # entries of purged or finished jobs are skipped until a live one comes
                    got = self._redis.xreadgroup(self._group, worker, {stream: ">"}, count=1)
                    entries = got[0][1] if got else []
                    if not entries:
                        break
                for entry_id, fields in entries:
                    if fields is None:  # the entry was deleted while pending
                        self._redis.xack(stream, self._group, entry_id)
                        continue
                    job = self._take(stream, entry_id, fields.get("job", ""), worker, lease_seconds)
                    if job is not None:
                        return job
                entries = []
        return None

    def _expired(self, stream: str, worker: str) -> list[tuple[str, dict[str, str] | None]]:
        """Take over one delivered entry whose job's lease has run out (its worker crashed or hung)."""
        now = time.time()
        for pending in self._redis.xpending_range(stream, self._group, min="-", max="+", count=50):
            entry_id = pending["message_id"]
            entry = self._redis.xrange(stream, entry_id, entry_id)
            job_id = entry[0][1].get("job", "") if entry else ""
            status, lease = (self._redis.hmget(self._job_key(job_id), ["status", "lease_until"]) if job_id
                             else (None, None))
            if status == JobStatus.RUNNING.value:
                if float(lease or 0) > now:
                    continue
            elif int(pending["time_since_delivered"]) < _READ_GRACE_MS:
                continue  # just read by a worker that has not marked it running yet
            # XCLAIM succeeds only if nobody touched the entry since we looked (idle time did not reset).
            claimed = self._redis.xclaim(stream, self._group, worker,
                                         min_idle_time=int(pending["time_since_delivered"]),
                                         message_ids=[entry_id])
            if claimed:
                return [(cid, fields) for cid, fields in claimed]
        return []

    def _take(self, stream: str, entry_id: str, job_id: str, worker: str, lease_seconds: float) -> Job | None:
        key = self._job_key(job_id)
        data = self._redis.hgetall(key)
        if not data or data.get("status") in (JobStatus.DONE.value, JobStatus.FAILED.value):
            self._redis.xack(stream, self._group, entry_id)
            return None
        ts = time.time()
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrby(key, "attempts", 1)
        pipe.hset(key, mapping={"status": JobStatus.RUNNING.value, "lease_until": ts + lease_seconds,
                                "updated_at": ts, "worker": worker, "entry": entry_id})
        pipe.hgetall(key)
        data = pipe.execute()[-1]
        return self._job(data)

    def extend(self, job_id: str, *, worker: str, lease_seconds: float = 60.0) -> None:
        """Keep a long job's lease alive (resets the entry's idle time)."""
        data = self._redis.hgetall(self._job_key(job_id))
        if data.get("entry"):
            self._redis.xclaim(self._stream(data["kind"]), self._group, worker, 0, [data["entry"]], justid=True)
            self._redis.hset(self._job_key(job_id), "lease_until", time.time() + lease_seconds)

    def _ack(self, data: dict[str, str]) -> None:
        if data.get("entry"):
            stream = self._stream(data["kind"])
            self._redis.xack(stream, self._group, data["entry"])
            self._redis.xdel(stream, data["entry"])

    def complete(self, job_id: str) -> None:
        key = self._job_key(job_id)
        data = self._redis.hgetall(key)
        if not data:
            return
        self._redis.hset(key, mapping={"status": JobStatus.DONE.value, "updated_at": time.time(),
                                       "lease_until": 0})
        self._ack(data)

    def fail(self, job_id: str, error: str, *, retry: bool = True, max_attempts: int = 5,
             retry_in: float = 0.0) -> None:
        key = self._job_key(job_id)
        data = self._redis.hgetall(key)
        if not data:
            return
        ts = time.time()
        again = retry and int(data.get("attempts", 0)) < max_attempts
        status = JobStatus.PENDING if again else JobStatus.FAILED
        due = ts + max(0.0, retry_in) if again else 0.0
        self._redis.hset(key, mapping={"status": status.value, "last_error": error[:2000],
                                       "updated_at": ts, "lease_until": 0, "entry": "", "available_at": due})
        self._ack(data)
        if again:
            self._redis.zadd(self._delayed(data["kind"]), {job_id: due})

    def retry(self, job_id: str) -> bool:
        key = self._job_key(job_id)
        data = self._redis.hgetall(key)
        if data.get("status") not in (JobStatus.FAILED.value, JobStatus.PENDING.value):
            return False
        kind = data["kind"]
        if data["status"] == JobStatus.PENDING.value and not self._redis.zrem(self._delayed(kind), job_id):
            return True  # already on the stream (never failed, or a worker just released it): nothing to do
        self._redis.hset(key, mapping={"status": JobStatus.PENDING.value, "attempts": 0, "available_at": 0,
                                       "lease_until": 0, "updated_at": time.time()})
        self._ensure_group(kind)
        self._redis.xadd(self._stream(kind), {"job": job_id})
        return True

    def purge(self, *, user_id: str | None = None, cube_ids: Sequence[str] = (), memory_ids: Sequence[str] = (),
              thread_ids: Sequence[str] = ()) -> list[str]:
        doomed: list[str] = []
        for job_id in self._redis.zrange(f"{self.prefix}:jobs", 0, -1):
            data = self._redis.hgetall(self._job_key(job_id))
            payload = json.loads(data.get("payload") or "{}") if data else {}
            if not data or not job_touches(payload, user_id=user_id, cube_ids=cube_ids, memory_ids=memory_ids,
                                                thread_ids=thread_ids):
                continue
            stream = self._stream(data["kind"])
            pipe = self._redis.pipeline(transaction=True)
            if data.get("entry"):
                pipe.xack(stream, self._group, data["entry"])
                pipe.xdel(stream, data["entry"])
            pipe.zrem(self._delayed(data["kind"]), job_id)
            pipe.zrem(f"{self.prefix}:jobs", job_id)
            if data.get("dedup_key"):
                pipe.delete(f"{self.prefix}:dedup:{data['dedup_key']}")
            pipe.delete(self._job_key(job_id))
            pipe.execute()
            doomed.append(job_id)
        return doomed

    def get(self, job_id: str) -> Job | None:
        data = self._redis.hgetall(self._job_key(job_id))
        return self._job(data) if data else None

    def list(self, *, status: JobStatus | None = None, limit: int = 100) -> list[Job]:
        jobs: list[Job] = []
        start = 0
        while len(jobs) < limit:
            ids = self._redis.zrevrange(f"{self.prefix}:jobs", start, start + 499)
            if not ids:
                break
            start += len(ids)
            pipe = self._redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self._job_key(job_id))
            for data in pipe.execute():
                if data and (status is None or data.get("status") == JobStatus(status).value):
                    jobs.append(self._job(data))
        return jobs[:limit]

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in JobStatus}
        ids = self._redis.zrange(f"{self.prefix}:jobs", 0, -1)
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self._job_key(job_id), "status")
        for status in pipe.execute():
            if status:
                counts[status] = counts.get(status, 0) + 1
        return counts

    def close(self) -> None:
        self._redis.close()
