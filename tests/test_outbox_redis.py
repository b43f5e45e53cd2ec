"""The Redis Streams outbox against a real redis-server started on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from stores.outbox import JobStatus, Outbox
from stores.outbox_redis import RedisOutbox
from tests.test_registry_outbox import check_backoff_and_retry

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    port = _free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def outbox(redis_url: str, request: pytest.FixtureRequest) -> RedisOutbox:
    box = RedisOutbox(redis_url, prefix=f"t-{request.node.name}")
    yield box
    box.close()


def test_protocol_and_dedup_key(outbox: RedisOutbox) -> None:
    assert isinstance(outbox, Outbox)
    first = outbox.enqueue("enrich_turn", {"n": 1}, dedup_key="enrich:t1")
    again = outbox.enqueue("enrich_turn", {"n": 1}, dedup_key="enrich:t1")
    assert first == again
    assert outbox.counts()["pending"] == 1
    job = outbox.claim(worker="w1")
    assert job is not None and job.id == first and job.payload == {"n": 1}
    assert job.status == JobStatus.RUNNING and job.attempts == 1
    assert outbox.claim(worker="w2") is None  # delivered once while its lease runs
    outbox.complete(job.id)
    done = outbox.get(job.id)
    assert done is not None and done.status == JobStatus.DONE
    assert outbox.list(status=JobStatus.DONE)[0].id == job.id


def test_fail_retries_then_fails_with_last_error(outbox: RedisOutbox) -> None:
    job_id = outbox.enqueue("enrich_turn", {})
    for attempt in (1, 2):
        job = outbox.claim(worker="w1")
        assert job is not None and job.id == job_id and job.attempts == attempt
        outbox.fail(job_id, f"boom {attempt}", max_attempts=2)
    failed = outbox.get(job_id)
    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.attempts == 2 and failed.last_error == "boom 2"
    assert outbox.claim(worker="w1") is None


def test_expired_lease_is_claimed_by_another_worker(outbox: RedisOutbox) -> None:
    job_id = outbox.enqueue("enrich_turn", {"x": 1})
    first = outbox.claim(worker="crashed", lease_seconds=0.3)
    assert first is not None and first.id == job_id
    assert outbox.claim(worker="w2", lease_seconds=0.3) is None
    time.sleep(0.5)
    second = outbox.claim(worker="w2", lease_seconds=30)
    assert second is not None and second.id == job_id and second.attempts == 2
    outbox.complete(job_id)
    assert outbox.counts()["done"] == 1


def test_two_workers_share_the_stream_each_job_once(redis_url: str) -> None:
    producer = RedisOutbox(redis_url, prefix="two-workers")
    ids = [producer.enqueue("enrich_turn", {"i": i}, dedup_key=f"k{i}") for i in range(60)]
    handled: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        box = RedisOutbox(redis_url, prefix="two-workers")  # its own connection, like another machine
        idle = 0
        while idle < 5:
            job = box.claim(worker=name, lease_seconds=30)
            if job is None:
                idle += 1
                time.sleep(0.02)
                continue
            idle = 0
            with lock:
                handled.append((name, job.id))
            time.sleep(0.002)
            box.complete(job.id)
        box.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    per_job = Counter(job_id for _, job_id in handled)
    assert set(per_job) == set(ids) and max(per_job.values()) == 1
    per_worker = Counter(name for name, _ in handled)
    assert per_worker["w0"] > 0 and per_worker["w1"] > 0, per_worker
    assert producer.counts()["done"] == 60
    producer.close()


def test_backs_off_and_requeues(outbox: RedisOutbox) -> None:
    check_backoff_and_retry(outbox)  # the same contract as the SQLite outbox
