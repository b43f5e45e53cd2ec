"""Registry (users, cubes, shares, API keys) and the SQLite outbox."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from stores.errors import AccessDeniedError, InvalidInputError, NotFoundError
from stores.outbox import JobStatus, SqliteOutbox
from stores.registry import Access, Registry, hash_key


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


def test_outbox_dedups_leases_and_retries(tmp_path: Path) -> None:
    outbox = SqliteOutbox(tmp_path / "o.sqlite")
    a = outbox.enqueue("enrich_turn", {"n": 1}, dedup_key="k1")
    assert outbox.enqueue("enrich_turn", {"n": 1}, dedup_key="k1") == a
    b = outbox.enqueue("enrich_turn", {"n": 2})
    job = outbox.claim(worker="w1", lease_seconds=0.05)
    assert job is not None and job.id == a and job.attempts == 1
    assert outbox.claim(worker="w2", lease_seconds=10).id == b  # type: ignore[union-attr]
    assert outbox.claim(worker="w2") is None
    time.sleep(0.1)  # w1's lease on `a` runs out: the job is handed out again (at-least-once)
    again = outbox.claim(worker="w2")
    assert again is not None and again.id == a and again.attempts == 2
    outbox.fail(a, "boom", max_attempts=2)
    assert outbox.get(a).status == JobStatus.FAILED and outbox.get(a).last_error == "boom"  # type: ignore[union-attr]
    outbox.fail(b, "flaky")
    assert outbox.get(b).status == JobStatus.PENDING  # type: ignore[union-attr]
    outbox.complete(outbox.claim(worker="w3").id)  # type: ignore[union-attr]
    assert outbox.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 1}


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
