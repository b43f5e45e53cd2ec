"""LoCoMo and LongMemEval loaders: parsing the real shared files, and ingestion through the ingest graph with
speaker, timestamp and session on every memory."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from hippograph.evals.loaders import (
    ingest_locomo_conversation,
    ingest_longmemeval_item,
    load_locomo,
    load_longmemeval,
    memory_dia_id,
    parse_evidence,
    shared_data_dir,
)
from hippograph.graphs.ingest import build_ingest_graph
from hippograph.settings import Settings
from hippograph.stores.embedders import HashingEmbeddings
from hippograph.stores.models import MemoryType
from hippograph.stores.services import Services
from hippograph.stores.tree.base import Rel

DATA = shared_data_dir()
LOCOMO = DATA / "locomo" / "locomo10_dev.json"
LONGMEMEVAL = DATA / "longmemeval" / "longmemeval_sample2.json"
pytestmark = pytest.mark.skipif(not LOCOMO.is_file() or not LONGMEMEVAL.is_file(),
                                reason=f"shared data not found under {DATA}")


def services_at(tmp_path: Path) -> Services:
    return Services.from_settings(Settings(data_dir=tmp_path / "data", embedder="hashing"),
                                  embeddings=HashingEmbeddings(64))


def test_shared_data_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HIPPOGRAPH_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.delenv("HIPPOGRAPH_SHARED_DATA")
    assert shared_data_dir().parts[-2:] == ("shared", "data")


def test_parse_evidence_is_lenient() -> None:
    known = {"D8:6", "D9:17", "D30:5"}
    assert parse_evidence(["D8:6; D9:17"], known) == (["D8:6", "D9:17"], 0)
    assert parse_evidence(["D30:05"], known) == (["D30:5"], 0)
    assert parse_evidence(["D"], known) == ([], 1)
    assert parse_evidence(["D1:1", "D8:6"], known) == (["D8:6"], 1)  # names no turn


def test_load_locomo_real_file() -> None:
    conversations = load_locomo(LOCOMO)
    assert [c.sample_id for c in conversations] == ["conv-26", "conv-30", "conv-41", "conv-42", "conv-43"]
    assert sum(len(c.turns) for c in conversations) == 2760
    assert sum(1 for c in conversations for q in c.qa if q.category in (1, 2, 3, 4)) == 762
    first = conversations[0]
    assert (first.speaker_a, first.speaker_b) == ("Caroline", "Melanie")
    assert [s.index for s in first.sessions] == list(range(1, len(first.sessions) + 1))
    assert first.sessions[0].date_time and first.turns[0].dia_id == "D1:1"
    known = {t.dia_id for c in conversations for t in c.turns}
    qa_dia = {d for c in conversations for q in c.qa for d in q.evidence}
    assert qa_dia <= known  # every kept evidence id names a real turn
    image = next(t for t in first.turns if t.blip_caption)
    assert image.blip_caption in image.content
    adversarial = [q for c in conversations for q in c.qa if q.category == 5]
    assert adversarial and all(q.adversarial_answer is not None or q.answer is not None for q in adversarial)
    assert all(isinstance(q.answer, str) for c in conversations for q in c.qa if q.category != 5)


def test_ingest_locomo_conversation_keeps_speaker_time_session(tmp_path: Path) -> None:
    services = services_at(tmp_path)
    graph = build_ingest_graph(services)
    conv = load_locomo(LOCOMO)[0]
    cube = "eval.conv-26"
    services.registry.ensure_user("eval")
    services.registry.create_cube("eval", cube)
    out = ingest_locomo_conversation(graph, conv, user_id="eval", cube_id=cube)
    turns = conv.turns
    assert out["summary"]["errors"] == 0 and len(out["results"]) == len(conv.sessions)
    assert set(out["dia_to_memory"]) == {t.dia_id for t in turns}
    memories = services.tree.get(list(out["dia_to_memory"].values()), cube_ids=[cube])
    assert len({m.id for m in memories}) == len(turns)  # one memory per turn, even repeated words
    by_dia = {memory_dia_id(m): m for m in memories}
    dates = {s.session_id: s.date_time for s in conv.sessions}
    for session in conv.sessions:
        for position, turn in enumerate(session.turns):
            memory = by_dia[turn.dia_id]
            assert memory.metadata["speaker"] == turn.speaker
            assert memory.metadata["timestamp"] == dates[session.session_id]
            # the turn model: sessions are namespaced by conversation, the speaker and date are in the key
            assert memory.session_id == f"{conv.sample_id}:{session.session_id}" and memory.turn_index == position
            assert memory.text.startswith(turn.content.strip()) and memory.key.startswith(f"{turn.speaker} on ")
            assert memory.occurred_at is not None
            ref = memory.source_refs[0]
            assert ref.kind == "turn" and ref.ref == turn.dia_id and ref.extra["speaker"] == turn.speaker
    # NEXT edges chain each session's turns; each turn hangs under its session node
    s1 = [out["dia_to_memory"][t.dia_id] for t in conv.sessions[0].turns]
    nexts = {(e.src, e.dst) for e in services.tree.edges(s1, rel=Rel.NEXT)}
    assert nexts == set(itertools.pairwise(s1))
    (parent,) = services.tree.get([services.tree.edges([s1[0]], rel=Rel.PARENT)[0].dst])
    assert parent.memory_type == MemoryType.TOPIC and dates["session_1"] in parent.text
    # idempotent
    count = services.tree.count(cube_ids=[cube])
    again = ingest_locomo_conversation(graph, conv, user_id="eval", cube_id=cube)
    assert again["summary"]["added"] == 0 and services.tree.count(cube_ids=[cube]) == count
    assert again["dia_to_memory"] == out["dia_to_memory"]


def test_longmemeval_load_and_ingest(tmp_path: Path) -> None:
    items = load_longmemeval(LONGMEMEVAL)
    assert len(items) == 2
    item = items[0]
    assert item.question and item.answer and item.answer_session_ids
    assert all(s["session_id"] and s["turns"] for s in item.sessions)
    assert set(item.answer_session_ids) <= {s["session_id"] for s in item.sessions}
    services = services_at(tmp_path)
    out = ingest_longmemeval_item(services, item, user_id="lme")
    assert out["summary"]["errors"] == 0
    memories = services.tree.get(list(out["dia_to_memory"].values()))
    assert len(memories) == sum(len([t for t in s["turns"] if t["content"].strip()]) for s in item.sessions)
    for memory in memories:
        assert memory.metadata["speaker"] in ("user", "assistant")
        assert memory.metadata["timestamp"] and memory.session_id
    evidence = [m for m in memories if m.metadata.get("has_answer")]
    assert evidence and {m.session_id.split(":", 1)[1] for m in evidence} <= set(item.answer_session_ids)

