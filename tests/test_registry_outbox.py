"""Registry (users, cubes, shares, API keys) and the SQLite outbox."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from hippograph.stores.errors import AccessDeniedError, InvalidInputError, NotFoundError
from hippograph.stores.outbox import JobStatus, RetryPolicy, SqliteOutbox
from hippograph.stores.registry import Access, Registry, hash_key
from tests.conftest import REPO


def test_api_keys_are_hashed_at_rest_and_revocable(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'r.sqlite'}")
    registry.create_user("ana")
    key = registry.create_api_key("ana")
    assert registry.user_for_key(key).id == "ana"
    with registry.engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("SELECT key_hash, key_prefix FROM api_keys"))]
    assert stored == [(hash_key(key), key[:10])] and key not in str(stored)
    registry.revoke_api_key(key)
    with pytest.raises(AccessDeniedError):
        registry.user_for_key(key)
    with pytest.raises(AccessDeniedError):
        registry.user_for_key("hg_made_up")


def test_cubes_and_shares(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'r.sqlite'}")
    for user in ("ana", "ben"):
        registry.create_user(user)
    registry.create_cube("ana", "ana.work")
    assert registry.readable("ben") == ["ben.default"]
    registry.share("ana", "ana.work", "ben", Access.READ)
    assert registry.readable("ben") == ["ben.default"]  # an invitation until Ben accepts
    registry.accept_share("ben", "ana.work")
    assert registry.readable("ben") == ["ben.default", "ana.work"]
    assert registry.writable("ben") == ["ben.default"]
    registry.share("ana", "ana.work", "ben", Access.WRITE)
    assert registry.writable("ben", ["ana.work"]) == ["ana.work"]
    registry.unshare("ana", "ana.work", "ben")
    with pytest.raises(AccessDeniedError):
        registry.readable("ben", ["ana.work"])
    with pytest.raises(AccessDeniedError):
        registry.create_cube("ben", "ana.work")
    with pytest.raises(NotFoundError):
        registry.get_user("zed")
    with pytest.raises(InvalidInputError):
        registry.create_cube("ana", "bad cube id; DROP TABLE cubes")


def test_scope_reads_writes_and_labels_shared_cubes_in_one_call(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'r.sqlite'}")
    registry.create_user("ana")
    registry.create_cube("ana", "ana.work")
    registry.share("ana", "ana.work", "ben", Access.READ)  # ben does not exist yet: silently nothing
    turn = registry.scope("ben")  # created on first use
    assert (turn.read, turn.write, turn.shared_owners) == (["ben.default"], "ben.default", {})
    registry.share("ana", "ana.work", "ben", Access.READ)
    registry.accept_share("ben", "ana.work")
    turn = registry.scope("ben")
    assert (turn.read, turn.write, turn.shared_owners) == (["ben.default", "ana.work"], "ben.default",
                                                           {"ana.work": "ana"})
    assert registry.scope("ben", read=["ben.default"]).shared_owners == {}
    with pytest.raises(AccessDeniedError):
        registry.scope("ben", write="ana.work")  # read-only share
    with pytest.raises(AccessDeniedError):
        registry.scope("ben", read=["ana.secret"])
    with pytest.raises(InvalidInputError):
        registry.scope("ben", read=["x' OR 1=1 --"])


def test_outbox_heartbeat_keeps_a_long_job_from_being_claimed_twice(tmp_path: Path) -> None:
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    job_id = outbox.enqueue("enrich_turn", {"n": 1})
    assert outbox.claim(worker="w1", lease_seconds=0.2).id == job_id  # type: ignore[union-attr]
    outbox.extend(job_id, worker="w2", lease_seconds=30)  # not w2's job: no effect
    assert outbox.get(job_id).lease_until < time.time() + 1  # type: ignore[union-attr]
    outbox.extend(job_id, worker="w1", lease_seconds=30)
    time.sleep(0.3)  # the first lease has run out; the extension holds
    assert outbox.claim(worker="w2") is None
    assert outbox.get(job_id).status == JobStatus.RUNNING  # type: ignore[union-attr]


def test_retry_policy_backs_off_exponentially_with_jitter() -> None:
    policy = RetryPolicy(base=2.0, cap=30.0, max_attempts=5)
    rng = random.Random(7)
    delays = [[policy.delay(n, rng=rng) for n in range(1, 7)] for _ in range(200)]
    for attempt, ceiling in enumerate([2, 4, 8, 16, 30, 30]):
        seen = [d[attempt] for d in delays]
        assert all(ceiling / 2 <= d <= ceiling for d in seen)
        assert len({round(d, 6) for d in seen}) > 150  # jittered, not one fixed delay
    assert RetryPolicy(base=0.0).delay(3) == 0.0


def test_sqlite_outbox_opens_a_file_written_before_back_off(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL, dedup_key TEXT "
            "UNIQUE, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT "
            "'', created_at REAL NOT NULL, updated_at REAL NOT NULL, lease_until REAL NOT NULL DEFAULT 0, "
            "worker TEXT NOT NULL DEFAULT '');"
            "INSERT INTO jobs (id, kind, payload, status, created_at, updated_at) "
            "VALUES ('j1', 'enrich_turn', '{}', 'pending', 1, 1);"
        )
    outbox = SqliteOutbox(path)
    job = outbox.claim(worker="w")
    assert job is not None and job.id == "j1" and job.available_at == 0.0


_CREATE_USER = """
import pathlib, sys, time
from hippograph.stores.registry import Registry
registry = Registry(sys.argv[1])
ready, go = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
(ready / str(sys.argv[4])).touch()
while not go.exists():
    time.sleep(0.002)
user = registry.ensure_user("racer") if int(sys.argv[4]) % 2 else registry.create_user("racer")
print(user.id, registry.readable("racer"))
"""


def test_sixteen_processes_create_the_same_new_user_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    Registry(url)  # the schema exists before the race, as after any first start
    ready, go = tmp_path / "ready", tmp_path / "go"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _CREATE_USER, url, str(ready), str(go), str(i)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(16)]
    deadline = time.time() + 120
    while len(list(ready.iterdir())) < 16 and time.time() < deadline:  # all imported and waiting
        time.sleep(0.05)
    go.touch()  # half call create_user, half ensure_user, at the same instant
    results = [p.communicate(timeout=120) for p in procs]
    errors = [err for p, (_, err) in zip(procs, results, strict=True) if p.returncode != 0]
    assert errors == []
    assert {out.strip() for out, _ in results} == {"racer ['racer.default']"}
    assert [u.id for u in Registry(url).list_users()] == ["racer"]


def test_cli_jobs_retry_requeues_failed_jobs(tmp_path: Path) -> None:
    outbox = SqliteOutbox(tmp_path / "outbox.sqlite")
    ids = [outbox.enqueue("enrich_turn", {"n": n}) for n in range(3)]
    for job_id in ids:
        outbox.claim(worker="w")
        outbox.fail(job_id, "boom", retry=False)
    outbox.complete(outbox.enqueue("enrich_turn", {"n": 3}))
    env = {**os.environ, "HIPPOGRAPH_DATA_DIR": str(tmp_path)}
    cli = [str(Path(sys.executable).parent / "hippograph"), "jobs", "retry"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    one = run(ids[0])
    assert one.returncode == 0 and f"requeued {ids[0]}" in one.stdout
    assert outbox.get(ids[0]).status == JobStatus.PENDING and outbox.get(ids[0]).attempts == 0  # type: ignore[union-attr]
    rest = run("--failed")
    assert rest.returncode == 0 and "requeued 2 failed job(s)" in rest.stdout
    assert outbox.counts() == {"pending": 3, "running": 0, "done": 1, "failed": 0}
    done = outbox.list(status=JobStatus.DONE)[0].id
    refused = run(done)
    assert refused.returncode == 1 and "is done" in refused.stdout
    assert run().returncode == 2  # neither an id nor --failed
