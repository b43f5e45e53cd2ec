"""Redis Streams specifics (the shared contract is tests/contract/test_outbox.py): many workers, one stream."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter

import pytest

from hippograph.stores.outbox_redis import RedisOutbox

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


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
