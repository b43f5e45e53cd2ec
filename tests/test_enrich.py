"""The enrichment graph and the worker, on real backends (embedded tree, Milvus Lite, SQLite outbox)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hippograph.graphs.enrich import NODES, build_enrich_graph, open_enrich_checkpointer
from hippograph.nodes.enrich_common import ENRICH_KIND, WORKING_MEMORY_SIZE
from hippograph.settings import Settings
from hippograph.stores.models import MemoryStatus, MemoryType
from hippograph.stores.outbox import JobStatus, RetryPolicy
from hippograph.stores.preferences.milvus import MilvusPreferenceStore
from hippograph.stores.services import Services
from hippograph.stores.tree.base import Rel
from hippograph.worker import Worker, start_in_process_worker
from tests.conftest import REPO
from tests.enrich_helpers import fast_path_turn, memory_census
from tests.fakes import ScriptedChatModel

TURNS = [
    "I live in Paris and I work as a nurse at the city hospital. I love spicy food.",
    "My sister Anna lives in Berlin. She has two kids.",
    "I have two cats. I really enjoy jazz music and go to concerts every month.",
    "My cat Milo loves sleeping in the sun. My cat Luna likes to chase birds in the garden.",
    "I hate spicy food these days. I have three cats now.",
]


@pytest.fixture(scope="module")
def prefs(tmp_path_factory: pytest.TempPathFactory, minilm) -> MilvusPreferenceStore:  # type: ignore[no-untyped-def]
    s = MilvusPreferenceStore(tmp_path_factory.mktemp("milvus") / "prefs.db", embeddings=minilm)
    yield s
    s.close()


def _services(data_dir: Path, minilm, prefs=None, **kw) -> Services:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=data_dir, worker_in_process=False, **kw)
    return Services.from_settings(settings, embeddings=minilm, preferences=prefs)


def _ingest(services: Services, user: str, cube: str, turns: list[str] = TURNS) -> list[str]:
    return [fast_path_turn(services, user=user, cube=cube, session="s1", index=i, user_text=t)[0]
            for i, t in enumerate(turns)]


def test_enrich_end_to_end(tmp_path: Path, minilm, prefs) -> None:  # type: ignore[no-untyped-def]
    services = _services(tmp_path / "d", minilm, prefs)
    raw_ids = _ingest(services, "en-u1", "en-c1")
    raw_before = {m.id: m.text for m in services.tree.get(raw_ids)}
    worker = Worker(services)
    assert worker.run(until_idle=True) == len(TURNS)
    assert services.outbox.counts()["done"] == len(TURNS)
    tree = services.tree
    # Fast-path ids and texts never change.
    assert {m.id: m.text for m in tree.get(raw_ids)} == raw_before
    every = tree.list(cube_ids=["en-c1"], statuses=list(MemoryStatus), limit=1000)
    facts = {m.text: m for m in every if m.source == "enrichment" and m.memory_type == MemoryType.LONG_TERM}
    assert "I work as a nurse at the city hospital." in facts
    # Supersede keeps history: "two cats" -> "three cats", with the SUPERSEDES edge.
    old, new = facts["I have two cats."], facts["I have three cats now."]
    assert old.status == MemoryStatus.SUPERSEDED and old.valid_to is not None
    assert new.status == MemoryStatus.ACTIVE
    assert any(e.dst == old.id for e in tree.edges([new.id], rel=Rel.SUPERSEDES))
    # A topic was created for the cluster of cat facts, with PARENT edges.
    topics = [m for m in every if m.memory_type == MemoryType.TOPIC]
    assert topics and "cat" in topics[0].text.lower()
    children = {e.src for e in tree.edges([topics[0].id], rel=Rel.PARENT, direction="in")}
    assert facts["My cat Milo loves sleeping in the sun."].id in children
    # Working memory: bounded, ranked, per session, readable the way retrieve_tree reads it.
    working = tree.list(cube_ids=["en-c1"], session_id="s1", memory_type=MemoryType.WORKING.value)
    assert 0 < len(working) <= WORKING_MEMORY_SIZE
    assert sorted(m.metadata["rank"] for m in working) == list(range(len(working)))
    assert all(m.metadata["source_id"] in {x.id for x in every} for m in working)
    # Preferences: the newer, opposite one supersedes; only current ones are searchable.
    history = prefs.list(user_id="en-u1", include_inactive=True)
    spicy = {p.text: p for p in history if "spicy" in p.text}
    assert spicy["I love spicy food."].status == MemoryStatus.SUPERSEDED
    assert spicy["I hate spicy food these days."].status == MemoryStatus.ACTIVE
    current = [h.text for h in prefs.search("Recommend a spicy curry", user_id="en-u1", k=5)]
    assert "I hate spicy food these days." in current and "I love spicy food." not in current
    # The job's graph state is checkpointed per job, every node ran once.
    job = services.outbox.list(status=JobStatus.DONE, limit=1)[0]
    state = worker.graph.get_state({"configurable": {"thread_id": job.id}})
    assert state.values["trace"] == NODES and not state.next


def test_llm_extraction_path_with_scripted_model(tmp_path: Path, minilm, prefs) -> None:  # type: ignore[no-untyped-def]
    reply = {"facts": [{"text": "The user trains for the Berlin marathon in May", "message_ids": ["s1-m0"]}],
             "preferences": [{"kind": "implicit", "text": "I prefer training outdoors", "topic": "fitness",
                              "polarity": 1, "evidence_message_ids": ["s1-m0"], "quote": "run along the river"}]}

    def check(messages) -> None:  # type: ignore[no-untyped-def]
        assert "[s1-m0] human: I run along the river every morning for the Berlin marathon." in messages[-1].content
        assert "[s1-m0-ai] ai: Noted." in messages[-1].content

    model = ScriptedChatModel(replies=[json.dumps(reply)], check=check)
    services = _services(tmp_path / "d", minilm, prefs, mode="fine")
    services.chat_model = model
    _ingest(services, "en-u2", "en-c2", ["I run along the river every morning for the Berlin marathon."])
    Worker(services).run(until_idle=True)
    assert len(model.prompts) == 1
    facts = [m.text for m in services.tree.list(cube_ids=["en-c2"]) if m.source == "enrichment"
             and m.memory_type == MemoryType.LONG_TERM]
    assert facts == ["The user trains for the Berlin marathon in May"]
    (pref,) = prefs.list(user_id="en-u2")
    assert pref.kind.value == "implicit" and pref.evidence[0].message_id == "s1-m0"


def test_failing_job_records_attempts_and_last_error(tmp_path: Path, minilm, prefs) -> None:  # type: ignore[no-untyped-def]
    services = _services(tmp_path / "d", minilm, prefs)
    job_id = services.outbox.enqueue(ENRICH_KIND, {"user_id": "en-u3", "cube_id": "bad cube id!", "messages": [
        {"id": "m1", "role": "human", "content": "I like tea with milk in the afternoon."}]})
    worker = Worker(services, retry=RetryPolicy(base=0.0, max_attempts=2))
    worker.run(until_idle=True)
    job = services.outbox.get(job_id)
    assert job is not None and job.status == JobStatus.FAILED and job.attempts == 2
    assert "invalid cube id" in job.last_error


def test_in_process_worker_thread(tmp_path: Path, minilm, prefs) -> None:  # type: ignore[no-untyped-def]
    services = _services(tmp_path / "d", minilm, prefs)
    thread = start_in_process_worker(services, poll_interval=0.05)
    try:
        _ingest(services, "en-u4", "en-c4", TURNS[:2])
        deadline = time.time() + 60
        while services.outbox.counts()["done"] < 2 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        thread.stop()
    assert services.outbox.counts()["done"] == 2 and not thread.is_alive()


def _worker_process(data_dir: Path, *args: str, delay: float = 0.0) -> subprocess.Popen[bytes]:
    """`python -m hippograph worker` on data_dir; its log goes to data_dir/worker.log (a pipe could fill up)."""
    env = {**os.environ, "HIPPOGRAPH_DATA_DIR": str(data_dir), "HIPPOGRAPH_EMBEDDER": "minilm",
           "HIPPOGRAPH_WORKER_IN_PROCESS": "false", "HIPPOGRAPH_ENRICH_NODE_DELAY": str(delay),
           "HIPPOGRAPH_CHAT_MODEL": ""}
    return subprocess.Popen([sys.executable, "-m", "hippograph", "worker", "--poll", "0.1", *args], cwd=REPO,
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=(data_dir / "worker.log").open("ab"))


def _census(services: Services, prefs: MilvusPreferenceStore, user: str, cube: str) -> dict[str, object]:
    every = services.tree.list(cube_ids=[cube], statuses=list(MemoryStatus), limit=10_000)
    return {
        "types": memory_census(services, cube),
        "texts": sorted((m.memory_type.value, m.status.value, m.text) for m in every
                        if m.memory_type != MemoryType.WORKING),
        "prefs": sorted((p.status.value, p.text) for p in prefs.list(user_id=user, include_inactive=True)),
    }


def test_worker_sigkill_mid_job_then_restart_is_exactly_once(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    user, cube = "kill-u", "kill-c"
    # Reference: the same turns processed by an uninterrupted in-process worker.
    ref_prefs = MilvusPreferenceStore(tmp_path / "ref" / "preferences.db", embeddings=minilm)
    ref = _services(tmp_path / "ref", minilm, ref_prefs)
    _ingest(ref, user, cube)
    Worker(ref).run(until_idle=True)
    expected = _census(ref, ref_prefs, user, cube)
    ref_prefs.close()

    data = tmp_path / "crash"
    services = _services(data, minilm)  # Milvus is opened only after the worker processes are gone
    _ingest(services, user, cube)
    lease = 3.0
    proc = _worker_process(data, "--lease", str(lease), delay=0.4)
    victim = None
    deadline = time.time() + 120
    while time.time() < deadline and victim is None:
        running = services.outbox.list(status=JobStatus.RUNNING)
        if running and services.outbox.counts()["done"] >= 1 and time.time() - running[0].updated_at > 1.0:
            victim = running[0]
        time.sleep(0.05)
    assert victim is not None, (data / "worker.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the worker and its Milvus Lite child, mid-job
    proc.wait(10)
    killed = services.outbox.get(victim.id)
    assert killed is not None and killed.status == JobStatus.RUNNING  # stuck until its lease expires

    time.sleep(lease + 0.5)
    proc = _worker_process(data, "--lease", "60", "--once")
    assert proc.wait(240) == 0, (data / "worker.log").read_text()[-3000:]
    counts = services.outbox.counts()
    assert counts["done"] == len(TURNS) and counts["running"] == counts["pending"] == counts["failed"] == 0
    resumed = services.outbox.get(victim.id)
    assert resumed is not None and resumed.attempts == 2
    # Resumed from its checkpoint: every node ran exactly once in the surviving history.
    graph = build_enrich_graph(services, checkpointer=open_enrich_checkpointer(services.settings))
    assert graph.get_state({"configurable": {"thread_id": victim.id}}).values["trace"] == NODES
    prefs = MilvusPreferenceStore(data / "preferences.db", embeddings=minilm)
    try:
        got = _census(services, prefs, user, cube)
    finally:
        prefs.close()
    diff = set(got["texts"]) ^ set(expected["texts"])  # type: ignore[arg-type]
    assert got == expected, diff  # no lost and no duplicated memories or preferences
