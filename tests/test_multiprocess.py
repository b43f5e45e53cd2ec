"""The multi-process deployment (deploy/docker-compose.yml): 2 API processes + 2 workers, sharing only services.

Every store is a server the test starts on a loopback port: PostgreSQL (registry + chat and enrichment
checkpoints), Redis Streams (the outbox), Neo4j (tree memory) and a Milvus server for preference memory
(`python -m milvus_lite server`, the Milvus gRPC API over a port: a Milvus Lite *file* cannot be shared, see
`stores/preferences/lite_owner.py`). Each process gets its own empty data dir, so nothing is shared by file.

Turns go in through API process 1, either worker enriches them, one worker is SIGKILLed in the middle of a job,
and everything is read back through API process 2; the result must equal an uninterrupted single-process run
of the same turns (nothing lost, nothing done twice).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.neo4j_fixture import wipe_database
from tests.test_http import ADMIN, free_port, start_server, stop, wait_http
from tests.test_postgres import postgres  # noqa: F401  (a fixture: PostgreSQL on a free port)

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
# redis_url and neo4j_server are session fixtures (tests/redis_fixture.py, tests/neo4j_fixture.py).

#: One user per turn: jobs of different users are independent, so two workers taking them in any order must
#: end where one worker taking them in turn ends.
TURNS = {
    "mp-ana": "I live in Paris and I work as a nurse at the city hospital. I love spicy food.",
    "mp-ben": "My sister Anna lives in Berlin. She has two kids.",
    "mp-cleo": "I have two cats. I really enjoy jazz music and go to concerts every month.",
    "mp-dan": "My cat Milo loves sleeping in the sun. My cat Luna likes to chase birds in the garden.",
    "mp-eve": "I prefer window seats on long flights and I always travel with a paper book.",
    "mp-fox": "I am vegetarian and I like Thai curries, but I can't stand coriander.",
    "mp-gus": "I moved to Lisbon last spring. I commute by bike along the river.",
    "mp-hal": "I play the cello in an amateur orchestra and rehearse on Tuesday evenings.",
}
NODE_DELAY = 0.3  # slows each enrichment node so a worker can be killed mid-job
LEASE = 3.0


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    data = tmp_path_factory.mktemp("milvus")
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data / "db"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=(data / "milvus.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((data / "milvus.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def _start_worker(data: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    data.mkdir(parents=True, exist_ok=True)
    full = {**os.environ, "HIPPOGRAPH_DATA_DIR": str(data), "HIPPOGRAPH_EMBEDDER": "hashing:64",
            "HIPPOGRAPH_CHAT_MODEL": "", "HIPPOGRAPH_WORKER_IN_PROCESS": "false",
            "HIPPOGRAPH_ENRICH_NODE_DELAY": str(NODE_DELAY), **env}
    return subprocess.Popen([sys.executable, "-m", "hippograph", "worker", "--poll", "0.1", "--lease", str(LEASE)],
                            cwd=REPO, env=full, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=(data / "worker.log").open("ab"))


def _census(http: httpx.Client, keys: dict[str, str]) -> dict[str, Any]:
    """Every user's memories (type, status, text, source) and preferences, read over HTTP."""
    out: dict[str, Any] = {}
    for user, key in keys.items():
        auth = {"Authorization": f"Bearer {key}"}
        items = http.get("/v1/memories", params={"limit": 500, "include_inactive": "true"}, headers=auth)
        prefs = http.get("/v1/preferences", params={"include_inactive": "true"}, headers=auth)
        assert items.status_code == prefs.status_code == 200, (items.text, prefs.text)
        out[user] = {
            "memories": sorted((m["memory_type"], m["status"], m["source"], m["text"]) for m in items.json()["items"]),
            "preferences": sorted((p["kind"], p["status"], p["text"]) for p in prefs.json()),
        }
    return out


def _reference(tmp: Path) -> dict[str, Any]:
    """The same turns in one process (embedded tree, Milvus Lite file), enriched by one uninterrupted worker."""
    from hippograph.memory import Memory
    from hippograph.settings import Settings
    from hippograph.worker import Worker

    memory = Memory(Settings(data_dir=tmp, embedder="hashing:64", chat_model="", worker_in_process=False))
    try:
        for user, text in TURNS.items():
            memory.services.registry.create_user(user)
            memory.chat(text, user_id=user, thread_id="t1")
        Worker(memory.services).run(until_idle=True)
        out = {}
        for user in TURNS:
            items = memory.list(user_id=user, limit=500, include_inactive=True)
            out[user] = {
                "memories": sorted((m.memory_type.value, m.status.value, m.source, m.text) for m in items),
                "preferences": sorted((p.kind.value, p.status.value, p.text)
                                      for p in memory.preferences(user_id=user, include_inactive=True)),
            }
        return out
    finally:
        memory.close()


def test_two_apis_two_workers_share_services_and_survive_a_killed_worker(
    postgres: str, redis_url: str, milvus_server: str, neo4j_server: Any, tmp_path: Path,  # noqa: F811
) -> None:
    import redis

    wipe_database(neo4j_server.uri, neo4j_server.auth)
    env = {
        "HIPPOGRAPH_TREE_BACKEND": "neo4j", "HIPPOGRAPH_NEO4J_URI": neo4j_server.uri,
        "HIPPOGRAPH_NEO4J_USER": neo4j_server.auth[0], "HIPPOGRAPH_NEO4J_PASSWORD": neo4j_server.auth[1],
        "HIPPOGRAPH_REGISTRY_URL": postgres.replace("postgresql://", "postgresql+psycopg://"),
        "HIPPOGRAPH_CHECKPOINTER_URL": postgres, "HIPPOGRAPH_OUTBOX_URL": redis_url,
        "HIPPOGRAPH_MILVUS_URI": milvus_server,
    }
    apis: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    workers: dict[int, subprocess.Popen[bytes]] = {}
    try:
        started = time.monotonic()
        for n in range(2):
            port = free_port()
            apis.append(start_server(tmp_path / f"api{n}", port, tmp_path / f"api{n}.log", **env))
            urls.append(f"http://127.0.0.1:{port}")
            if n == 0:  # the first creates the Postgres tables; the rest start together
                wait_http(urls[-1] + "/healthz", apis[-1])
                for m in range(2):
                    proc = _start_worker(tmp_path / f"worker{m}", env)
                    workers[proc.pid] = proc
        wait_http(urls[-1] + "/healthz", apis[-1])
        print(f"up after {time.monotonic() - started:.1f}s")
        one, two = (httpx.Client(base_url=u, timeout=120) for u in urls)

        keys = {}
        for user, text in TURNS.items():  # every write goes through API process 1
            r = one.post("/v1/users", json={"user_id": user}, headers={"X-API-Key": ADMIN})
            assert r.status_code == 201, r.text
            keys[user] = r.json()["api_key"]
            r = one.post("/v1/chat", json={"message": text, "thread_id": "t1"},
                         headers={"Authorization": f"Bearer {keys[user]}"})
            assert r.status_code == 200, r.text

        jobs = redis.Redis.from_url(redis_url, decode_responses=True)

        def job_states() -> list[dict[str, str]]:
            return [jobs.hgetall(f"hippograph:job:{j}") for j in jobs.zrange("hippograph:jobs", 0, -1)]

        def pid_of(job: dict[str, str]) -> int:
            return int(job.get("worker", "::0").split(":")[1] or 0)

        # Wait until both workers have finished a job, then SIGKILL one in the middle of its next job.
        victim: dict[str, str] | None = None
        deadline = time.monotonic() + 240
        while victim is None and time.monotonic() < deadline:
            states = job_states()
            finished_by = {pid_of(j) for j in states if j.get("status") == "done"}
            running = [j for j in states if j.get("status") == "running" and pid_of(j) in workers
                       and time.time() - float(j["updated_at"]) > 2 * NODE_DELAY]
            if set(workers) <= finished_by and running:
                victim = running[0]
            elif all(j.get("status") == "done" for j in states):
                break
            time.sleep(0.05)
        logs = "\n".join((tmp_path / f"worker{n}" / "worker.log").read_text()[-1500:] for n in range(2))
        assert victim is not None, f"no job to interrupt: {job_states()}\n{logs}"
        killed = workers.pop(pid_of(victim))
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(10)

        print(f"killed a worker after {time.monotonic() - started:.1f}s")
        deadline = time.monotonic() + 240  # the survivor takes the job over once its lease runs out
        while time.monotonic() < deadline and any(j.get("status") != "done" for j in job_states()):
            time.sleep(0.2)
        states = {j["id"]: j for j in job_states()}
        assert len(states) == len(TURNS) and all(j["status"] == "done" for j in states.values()), states
        assert int(states[victim["id"]]["attempts"]) == 2
        assert all(int(j["attempts"]) == 1 for i, j in states.items() if i != victim["id"])

        # The interrupted job resumed from its Postgres checkpoint: every node ran once in its history.
        from langgraph.checkpoint.postgres import PostgresSaver

        from hippograph.graphs.enrich import NODES

        with PostgresSaver.from_conn_string(postgres) as saver:
            state = saver.get_tuple({"configurable": {"thread_id": victim["id"], "checkpoint_ns": ""}})
            assert state is not None and state.checkpoint["channel_values"]["trace"] == NODES

        print(f"all jobs done after {time.monotonic() - started:.1f}s")
        # Read everything back through API process 2: same as one uninterrupted process.
        got = _census(two, keys)
        assert got == _census(one, keys)
        expected = _reference(tmp_path / "reference")
        print(f"reference run done after {time.monotonic() - started:.1f}s")
        assert got == expected
        assert sum(len(u["preferences"]) for u in got.values()) >= 3  # preference memory was shared
        r = two.post("/v1/search", json={"query": "cello orchestra"},
                     headers={"Authorization": f"Bearer {keys['mp-hal']}"})
        assert r.status_code == 200 and "cello" in r.json()[0]["item"]["text"], r.text
    finally:
        for proc in [*workers.values(), *apis]:
            stop(proc)
        for log in sorted(tmp_path.glob("api*.log")) + sorted(tmp_path.glob("worker*/worker.log")):
            print(f"== {log.name}\n{log.read_text(errors='replace')[-2000:]}")


def test_compose_file_is_the_tested_profile() -> None:
    """deploy/docker-compose.yml runs the services and settings the test above runs (it cannot start here)."""
    import yaml

    from hippograph.settings import Settings

    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"api", "worker", "neo4j", "milvus", "postgres", "redis"}
    assert services["neo4j"]["image"].startswith("neo4j:5.26")
    assert services["milvus"]["image"].startswith("milvusdb/milvus:v2.5")  # BM25 functions need 2.5+
    assert services["worker"]["command"] == ["hippograph", "worker"]
    assert "hippograph.api:create_app" in services["api"]["command"]
    env = services["api"]["environment"]
    assert env == services["worker"]["environment"]
    fields = set(Settings.model_fields)
    assert {k.removeprefix("HIPPOGRAPH_").lower() for k in env} <= fields
    # The profile of the test: every store a network service, enrichment only in the worker processes.
    assert env["HIPPOGRAPH_TREE_BACKEND"] == "neo4j" and env["HIPPOGRAPH_WORKER_IN_PROCESS"] == "false"
    assert env["HIPPOGRAPH_MILVUS_URI"].startswith("http://")  # never a Lite file across processes
    assert env["HIPPOGRAPH_REGISTRY_URL"].startswith("postgresql+psycopg://")
    assert env["HIPPOGRAPH_CHECKPOINTER_URL"].startswith("postgresql://")
    assert env["HIPPOGRAPH_OUTBOX_URL"].startswith("redis://")
    example = (REPO / "deploy" / ".env.example").read_text()
    for line in example.splitlines():
        key = line.split("=", 1)[0].strip()
        if key.startswith("HIPPOGRAPH_"):
            assert key.removeprefix("HIPPOGRAPH_").lower() in fields, key
