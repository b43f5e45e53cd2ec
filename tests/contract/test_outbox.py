"""The `Outbox` contract: every backend (SQLite, Redis Streams) passes the same tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hippograph.stores.outbox import JobStatus, Outbox, SqliteOutbox

OUTBOXES = ["sqlite", "redis"]


@pytest.fixture(params=OUTBOXES)
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outbox]:
    if request.param == "sqlite":
        box: Outbox = SqliteOutbox(tmp_path / "outbox.sqlite")
    else:
        from hippograph.stores.outbox_redis import RedisOutbox

        box = RedisOutbox(request.getfixturevalue("redis_url"), prefix=f"contract-{request.node.name}")
    yield box
    box.close()  # type: ignore[attr-defined]


def test_dedup_claim_once_complete(outbox: Outbox) -> None:
    assert isinstance(outbox, Outbox)
    first = outbox.enqueue("enrich_turn", {"n": 1}, dedup_key="enrich:t1")
    assert outbox.enqueue("enrich_turn", {"n": 1}, dedup_key="enrich:t1") == first
    second = outbox.enqueue("enrich_turn", {"n": 2})
    assert outbox.counts()["pending"] == 2
    job = outbox.claim(worker="w1")
    assert job is not None and job.id == first and job.payload == {"n": 1}
    assert job.status == JobStatus.RUNNING and job.attempts == 1
    other = outbox.claim(worker="w2")
    assert other is not None and other.id == second
    assert outbox.claim(worker="w3") is None  # each job is delivered once while its lease runs
    outbox.complete(first)
    done = outbox.get(first)
    assert done is not None and done.status == JobStatus.DONE
    assert [j.id for j in outbox.list(status=JobStatus.DONE)] == [first]
    assert outbox.counts() == {"pending": 0, "running": 1, "done": 1, "failed": 0}


def test_fail_retries_then_fails_with_the_last_error(outbox: Outbox) -> None:
    job_id = outbox.enqueue("enrich_turn", {})
    for attempt in (1, 2):
        job = outbox.claim(worker="w1")
        assert job is not None and job.id == job_id and job.attempts == attempt
        outbox.fail(job_id, f"boom {attempt}", max_attempts=2)
    failed = outbox.get(job_id)
    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.attempts == 2 and failed.last_error == "boom 2"
    assert outbox.claim(worker="w1") is None


def test_an_expired_lease_goes_to_another_worker(outbox: Outbox) -> None:
    job_id = outbox.enqueue("enrich_turn", {"x": 1})
    first = outbox.claim(worker="crashed", lease_seconds=0.3)
    assert first is not None and first.id == job_id
    assert outbox.claim(worker="w2", lease_seconds=0.3) is None
    time.sleep(0.5)
    second = outbox.claim(worker="w2", lease_seconds=30)
    assert second is not None and second.id == job_id and second.attempts == 2
    outbox.complete(job_id)
    assert outbox.counts()["done"] == 1


def test_a_heartbeat_keeps_the_lease(outbox: Outbox) -> None:
    job_id = outbox.enqueue("enrich_turn", {"n": 1})
    assert outbox.claim(worker="w1", lease_seconds=0.3).id == job_id  # type: ignore[union-attr]
    outbox.extend(job_id, worker="w1", lease_seconds=30)
    time.sleep(0.5)  # the first lease has run out; the extension holds
    assert outbox.claim(worker="w2") is None
    assert outbox.get(job_id).status == JobStatus.RUNNING  # type: ignore[union-attr]


def test_back_off_and_retry(outbox: Outbox) -> None:
    job_id = outbox.enqueue("enrich_turn", {"n": 1})
    assert outbox.claim(worker="w1").id == job_id  # type: ignore[union-attr]
    outbox.fail(job_id, "backend down", max_attempts=2, retry_in=0.6)
    waiting = outbox.get(job_id)
    assert waiting is not None and waiting.status == JobStatus.PENDING and waiting.available_at > time.time()
    assert outbox.claim(worker="w2") is None  # backing off
    time.sleep(0.7)
    again = outbox.claim(worker="w2")
    assert again is not None and again.id == job_id and again.attempts == 2
    assert outbox.claim(worker="w3") is None  # handed out once
    outbox.fail(job_id, "still down", max_attempts=2, retry_in=0.0)
    failed = outbox.get(job_id)
    assert failed is not None and failed.status == JobStatus.FAILED and failed.last_error == "still down"
    assert outbox.claim(worker="w3") is None
    # `hippograph jobs retry`: a failed job is requeued with a fresh set of attempts, at once.
    assert outbox.retry(job_id) is True
    requeued = outbox.claim(worker="w3")
    assert requeued is not None and requeued.id == job_id and requeued.attempts == 1
    outbox.complete(job_id)
    assert outbox.retry(job_id) is False  # done stays done
    assert outbox.retry("no-such-job") is False
    # A pending job waiting out a long back-off is requeued now.
    other = outbox.enqueue("enrich_turn", {"n": 2})
    outbox.claim(worker="w4")
    outbox.fail(other, "flaky", max_attempts=5, retry_in=3600)
    assert outbox.claim(worker="w4") is None
    assert outbox.retry(other) is True
    assert outbox.claim(worker="w4").id == other  # type: ignore[union-attr]
    assert outbox.claim(worker="w5") is None


def test_purge_deletes_the_jobs_of_a_user_cube_memory_or_thread(outbox: Outbox) -> None:
    def payload(user: str, cube: str, memory: str, thread: str) -> dict[str, object]:
        return {"user_id": user, "cube_id": cube, "memory_ids": [memory], "thread_id": thread,
                "messages": [{"content": f"secret of {user}"}]}

    ana = outbox.enqueue("enrich_turn", payload("ana", "ana.default", "m1", "ana/t"), dedup_key="enrich:m1")
    shared = outbox.enqueue("enrich_turn", payload("ben", "ana.work", "m2", "ben/t"))
    turn = outbox.enqueue("enrich_turn", payload("cy", "cy.default", "m3", "cy/t"))
    thread = outbox.enqueue("enrich_turn", payload("dee", "dee.default", "m4", "dee/chat"))
    keep = outbox.enqueue("enrich_turn", payload("eve", "eve.default", "m5", "eve/t"))
    claimed = outbox.claim(worker="w1")  # a leased job goes too
    assert claimed is not None and claimed.id == ana

    assert sorted(outbox.purge(user_id="ana", cube_ids=["ana.work"])) == sorted([ana, shared])
    assert outbox.purge(memory_ids=["m3"]) == [turn]
    assert outbox.purge(thread_ids=["dee/chat"]) == [thread]
    assert outbox.purge(user_id="nobody") == []
    assert [j.id for j in outbox.list()] == [keep]
    assert outbox.get(ana) is None
    # The purged dedup key is free again, and nothing purged is ever handed out.
    again = outbox.enqueue("enrich_turn", payload("ana", "ana.default", "m1", "ana/t"), dedup_key="enrich:m1")
    assert again != ana
    assert {outbox.claim(worker="w2").id, outbox.claim(worker="w3").id} == {keep, again}  # type: ignore[union-attr]
    assert outbox.claim(worker="w4") is None
