"""Evals: LoCoMo loading and scoring (turn and session level), the run's JSON shape through the public API, the
LongMemEval run, recall configuration reaching the nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hippograph.evals.locomo import (
    Row,
    SystemResult,
    load_locomo,
    recall_at,
    run_locomo,
    session_any_at,
)
from hippograph.stores.models import MemoryItem, SearchHit
from tests.conftest import shared_file

FIXED_SYSTEM_KEYS = {"recall@5", "recall@10", "recall@20", "by_category", "search_p50_ms", "search_p95_ms",
                     "ingest_turns_per_s"}


def tiny_locomo() -> list[dict[str, Any]]:
    """A hand-made LoCoMo sample: two sessions, an image turn, malformed and dangling evidence."""
    return [{
        "sample_id": "tiny-1",
        "conversation": {
            "speaker_a": "Ana",
            "speaker_b": "Ben",
            "session_1_date_time": "1:00 pm on 3 May, 2023",
            "session_1": [
                {"speaker": "Ana", "dia_id": "D1:1", "text": "I adopted a grey cat called Pixel last week."},
                {"speaker": "Ben", "dia_id": "D1:2", "text": "Lovely! What does Pixel like to eat?"},
                {"speaker": "Ana", "dia_id": "D1:3", "text": "Mostly tuna, and she hates dry food."},
                {"speaker": "Ben", "dia_id": "D1:4", "text": "I started learning the violin.",
                 "img_url": ["http://example.invalid/v.jpg"], "blip_caption": "a photo of a violin on a chair"},
            ],
            "session_2_date_time": "9:00 am on 20 June, 2023",
            "session_2": [
                {"speaker": "Ben", "dia_id": "D2:1", "text": "I played my first violin concert in the park!"},
                {"speaker": "Ana", "dia_id": "D2:2", "text": "Amazing. I ran a half marathon in Lisbon."},
                {"speaker": "Ben", "dia_id": "D2:3", "text": "Lisbon is beautiful in June."},
            ],
            # A date key with no session: loaders must iterate session_N keys, not date keys.
            "session_3_date_time": "10:00 am on 1 July, 2023",
        },
        "qa": [
            {"question": "What is the name of Ana's cat?", "answer": "Pixel", "evidence": ["D1:1"], "category": 4},
            {"question": "What food does Pixel like?", "answer": "tuna", "evidence": ["D1:2; D1:3"], "category": 1},
            {"question": "When did Ben play a violin concert?", "answer": "June 2023", "evidence": ["D2:01"],
             "category": 2},
            {"question": "Where did Ana run a half marathon?", "answer": "Lisbon", "evidence": ["D", "D2:2"],
             "category": 4},
            {"question": "What instrument might Ben teach?", "answer": 7, "evidence": ["D9:9"], "category": 3},
            {"question": "Did Ben adopt a cat?", "adversarial_answer": "yes", "evidence": ["D1:1"], "category": 5},
        ],
    }]


@pytest.fixture()
def tiny_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_locomo.json"
    path.write_text(json.dumps(tiny_locomo()), encoding="utf-8")
    return path


def test_loader_parses_sessions_and_counts_dropped_evidence(tiny_path: Path) -> None:
    (conv,) = load_locomo(tiny_path)
    assert conv.sample_id == "tiny-1"
    assert [t.dia_id for t in conv.turns] == ["D1:1", "D1:2", "D1:3", "D1:4", "D2:1", "D2:2", "D2:3"]
    assert conv.turns[4].date == "9:00 am on 20 June, 2023" and conv.turns[4].index == 0
    assert conv.turns[3].caption == "a photo of a violin on a chair"
    evidence = {q.question: q.evidence for q in conv.questions}
    assert evidence["What food does Pixel like?"] == ["D1:2", "D1:3"]  # "D1:2; D1:3" split
    assert evidence["When did Ben play a violin concert?"] == ["D2:1"]  # leading zero normalised
    assert evidence["Where did Ana run a half marathon?"] == ["D2:2"]  # "D" dropped
    assert evidence["What instrument might Ben teach?"] == []  # points to no turn
    assert conv.stats["dropped_evidence"] == 2
    assert conv.stats["questions_without_evidence"] == 1
    assert {q.answer for q in conv.questions} >= {"7", "yes"}


def test_evals_write_only_through_the_public_api() -> None:
    """No eval module builds memories or calls the write path itself: they write with `Memory.ingest` / the chat
    graph, like a user."""
    root = Path(__file__).resolve().parent.parent / "evals"
    for name in ("locomo.py", "longmemeval.py", "baselines.py", "qa.py", "report.py"):
        source = (root / name).read_text(encoding="utf-8")
        for banned in ("write_memories", "MemoryItem(", "hippograph.stores.write", "tree.add(", "NullPreferenceStore"):
            assert banned not in source, f"evals/{name} uses {banned}"
    assert "hippograph.evals.locomo" not in (root / "baselines.py").read_text(encoding="utf-8")  # no import cycle


def test_recall_at_k_and_session_any() -> None:
    assert recall_at(["D1:1", "D1:2"], ["D1:2", "D3:3", "D1:1"], 1) == 0.5
    assert recall_at(["D1:1", "D1:2"], ["D1:2", "D3:3", "D1:1"], 3) == 1.0
    assert recall_at(["D1:1"], [], 10) == 0.0
    assert recall_at([], ["D1:1"], 10) == 0.0
    # session_any@k counts distinct sessions in rank order: D3 twice is one session
    assert session_any_at(["D1"], ["D3", "D3", "D1"], 2) == 1.0
    assert session_any_at(["D1"], ["D3", "D2", "D1"], 2) == 0.0
    result = SystemResult("x", rows=[Row("single-hop", ["D1:1"], ["D1:1"], ["D1"], ["D1"]),
                                     Row("temporal", ["D1:1", "D1:2"], ["D9:9", "D1:2"], ["D1"], ["D9", "D1"])],
                          latencies_ms=[1.0, 3.0])
    summary = result.summary([1, 2])
    assert summary["recall@1"] == 0.5 and summary["recall@2"] == 0.75
    assert summary["session_any@1"] == 0.5 and summary["session_any@2"] == 1.0
    assert summary["by_category"]["single-hop"]["recall@1"] == 1.0
    assert summary["by_category"]["temporal"]["recall@2"] == 0.5
    assert summary["by_category"]["temporal"]["session_any@1"] == 0.0


def test_locomo_run_writes_fixed_keys_and_scores_small_conversation(tiny_path: Path, tmp_path: Path,
                                                                    minilm: Any) -> None:
    from hippograph.evals.baselines import CachedEmbeddings

    out = tmp_path / "out"
    report = run_locomo(tiny_path, out, progress=False, embeddings=CachedEmbeddings(minilm), ks=[1, 5, 10, 20])
    saved = json.loads((out / "locomo.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["questions"] == 4
    assert set(saved["systems"]) == {"hippograph", "hippograph_chat", "bm25", "dense", "langgraph_inmemory",
                                     "mem0"}
    for name, row in saved["systems"].items():
        assert set(row) >= FIXED_SYSTEM_KEYS, name
        assert 0.0 <= row["recall@5"] <= row["recall@10"] <= row["recall@20"] <= 1.0
        assert row["session_any@1"] <= row["session_any@5"] == 1.0  # two sessions: both are in the first five
        # Seven turns: the top 10 holds every turn, so every evidence id is found.
        assert row["recall@10"] == 1.0, name
    hippo, chat = saved["systems"]["hippograph"], saved["systems"]["hippograph_chat"]
    assert hippo["recall@1"] >= 0.5
    # the same turns written by Memory.ingest and replayed through the chat graph are the same memories
    assert {k: v for k, v in hippo.items() if k.startswith(("recall@", "session_any@"))} == \
        {k: v for k, v in chat.items() if k.startswith(("recall@", "session_any@"))}
    assert set(hippo["by_category"]) == {"multi-hop", "temporal", "single-hop"}
    assert saved["qa"]["skipped"] is True
    assert saved["config"]["read_path"].startswith("Memory.search")
    markdown = (out / "locomo.md").read_text()
    assert markdown.count("| hippograph |") == 3 and "session_any@10 by category" in markdown
    assert (out / "locomo.png").stat().st_size > 1000


def test_cli_locomo_runs(tiny_path: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hippograph.evals.cli import eval_app

    out = tmp_path / "cli"
    result = CliRunner().invoke(eval_app, ["locomo", "--data", str(tiny_path), "--out", str(out),
                                           "--systems", "hippograph,bm25", "--k", "1,5"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "locomo.json").read_text())
    assert set(saved["systems"]) == {"hippograph", "bm25"} and "recall@5" in saved["systems"]["bm25"]


def test_longmemeval_through_the_public_api(tmp_path: Path, minilm: Any) -> None:
    from hippograph.evals.baselines import CachedEmbeddings
    from hippograph.evals.longmemeval import load_longmemeval, run_longmemeval, session_recall, turn_docs

    path = shared_file("longmemeval/longmemeval_sample2.json")
    items = load_longmemeval(path)
    docs = turn_docs(items[0])
    assert any(has for _, _, has in docs) and all(d.rsplit(":", 1)[0] in {s["session_id"] for s in
                                                                           items[0].sessions} for d, _, _ in docs)
    assert session_recall(["a", "b"], ["b", "c"], 2) == 0.5
    report = run_longmemeval(path, ks=[1, 5, 10], embeddings=CachedEmbeddings(minilm), progress=False,
                             work_dir=tmp_path)
    assert report["questions"] == 2 and set(report["systems"]) == {"hippograph", "bm25", "dense"}
    for row in report["systems"].values():
        assert row["questions"] == 2
        assert 0.0 <= row["session_any@1"] <= row["session_any@5"] <= row["session_any@10"] <= 1.0
        assert row["recall@1"] <= row["recall@10"] and row["session_recall@1"] <= row["session_recall@10"]
        assert set(row["by_category"]) == {i.question_type for i in items}
    assert report["systems"]["hippograph"]["session_any@10"] == 1.0


def _hit(turn: int, ranks: dict[str, int], session: str = "s1") -> SearchHit:
    item = MemoryItem(id=f"m{turn}", user_id="u", cube_id="u.c", text=f"turn {turn}", session_id=session,
                      turn_index=turn)
    return SearchHit(item=item, ranks=ranks)


def test_fuse_propagates_to_adjacent_turns_of_the_same_session() -> None:
    import hippograph.nodes.rerank as rr
    hits = [_hit(5, {"bm25": 0, "vector": 0}), _hit(6, {"vector": 9}), _hit(20, {"vector": 8}),
            _hit(6, {"vector": 9}, session="s2").model_copy()]
    hits[3].item.id = "other"
    fused = rr.fuse(hits)
    assert fused[0].id == "m5"
    # m6 (next to the best hit) overtakes m20 although its own rank is worse.
    order = [h.id for h in fused]
    assert order.index("m6") < order.index("m20")
    # A turn with the same index in another session gets nothing.
    assert order.index("other") > order.index("m6")
    assert fused[1].score > fused[1].scores["rrf"]


def test_recall_config_reaches_the_nodes(tmp_path: Path) -> None:
    """Tuning is a typed config: the run's `ChatContext.recall`, else `Settings.recall` — no module globals."""
    from hippograph.graphs.search import build_search_graph
    from hippograph.memory import Memory
    from hippograph.nodes.state import ChatContext
    from hippograph.settings import Settings
    from hippograph.stores.recall_config import RecallConfig
    from hippograph.stores.services import Services

    settings = Settings(data_dir=tmp_path / "d", embedder="hashing:64", worker_in_process=False)
    with Memory(services=Services.from_settings(settings)) as memory:
        # Fixed times: keys carry the turn's time, so "now" would make the ranking depend on the clock.
        memory.add([{"role": "user", "content": f"turn number {n} about the garden",
                     "timestamp": f"2023-05-08T10:0{n}:00"} for n in range(8)], user_id="rc", session_id="s1")
        graph = build_search_graph(memory.services)

        def signals(cfg: RecallConfig | None) -> set[str]:
            context = ChatContext(user_id="rc", top_k=5, ingest=False, recall=cfg)
            hits = graph.invoke({"query": "garden turn number 3"}, context=context)["memories"]
            return {s for h in hits for s in h.ranks}

        assert "graph" in signals(None)  # the default expands the best seeds' neighbours
        assert "graph" not in signals(RecallConfig(expand_seeds=0))
    # the deployment's settings are the default of every run
    quiet = Settings(data_dir=tmp_path / "e", embedder="hashing:64", worker_in_process=False,
                     recall=RecallConfig(expand_seeds=0))
    with Memory(services=Services.from_settings(quiet)) as memory:
        memory.add([{"role": "user", "content": f"turn number {n} about the garden"} for n in range(8)],
                   user_id="rc", session_id="s1")
        hits = memory.search("garden turn number 3", user_id="rc", top_k=5)
        assert hits and all("graph" not in h.ranks for h in hits)
    with pytest.raises(ValueError):
        RecallConfig(rrf_k=-1)


def test_locomo_qa_with_a_chat_model_scores_f1_and_judge(tiny_path: Path, tmp_path: Path, minilm: Any) -> None:
    from langchain_core.messages import BaseMessage

    from hippograph.evals.baselines import CachedEmbeddings
    from hippograph.evals.qa import ANSWER_SYSTEM, JUDGE_SYSTEM, token_f1
    from tests.fakes import ScriptedChatModel

    def check(messages: list[BaseMessage]) -> None:
        system, human = str(messages[0].content), str(messages[1].content)
        if system == ANSWER_SYSTEM:  # the question with hippograph's memories, speaker and date in each
            assert "Question: " in human and "[1] " in human and " on " in human and "said" not in human
        else:
            assert system == JUDGE_SYSTEM and "Gold answer: " in human and "Generated answer: " in human

    # four questions, in file order: answer, then verdict for each
    replies = ["Pixel", "CORRECT", "tuna and chicken", "CORRECT", "in May", "WRONG", "Lisbon, Portugal",
               "Correct."]
    model = ScriptedChatModel(replies=replies, check=check)
    report = run_locomo(tiny_path, tmp_path / "out", progress=False, embeddings=CachedEmbeddings(minilm),
                        systems=["hippograph"], chat_model=model)
    qa = report["qa"]
    assert qa["skipped"] is False and qa["questions"] == 4 and len(model.prompts) == 8
    assert "Question: What is the name of Ana's cat?" in str(model.prompts[0][1].content)
    assert "Pixel" in str(model.prompts[0][1].content)  # the evidence turn reached the answer prompt
    assert "Gold answer: Pixel\nGenerated answer: Pixel" in str(model.prompts[1][1].content)
    assert qa["judge_accuracy"] == 0.75
    expected = (1.0 + token_f1("tuna and chicken", "tuna") + 0.0 + token_f1("Lisbon, Portugal", "Lisbon")) / 4
    assert qa["f1"] == round(expected, 4) and 0.0 < token_f1("tuna and chicken", "tuna") < 1.0
    assert qa["by_category"]["temporal"] == {"questions": 1, "f1": 0.0, "judge_accuracy": 0.0}
    assert "| overall | 4 |" in (tmp_path / "out" / "locomo.md").read_text()


def test_token_f1_follows_locomo_normalisation() -> None:
    from hippograph.evals.qa import token_f1

    assert token_f1("The Lisbon marathon!", "lisbon marathon") == 1.0
    assert token_f1("Paris", "Lisbon") == 0.0
    assert round(token_f1("a grey cat named Pixel", "Pixel"), 4) == round(2 * (1 / 4) / (1 / 4 + 1), 4)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0


def test_mem0_peer_runs_in_the_same_run_with_the_same_embedder(tiny_path: Path, tmp_path: Path, minilm: Any) -> None:
    from hippograph.evals.baselines import CachedEmbeddings
    from hippograph.evals.locomo import default_systems

    assert "mem0" in default_systems()  # the dev extra installs the peer, so CI runs it for real
    report = run_locomo(tiny_path, tmp_path / "out", progress=False, embeddings=CachedEmbeddings(minilm),
                        systems=["dense", "mem0"], ks=[1, 3, 10])
    mem0, dense = report["systems"]["mem0"], report["systems"]["dense"]
    assert mem0["questions"] == 4 and mem0["recall@10"] == 1.0
    # mem0 without an LLM is dense search over the same raw turns with the same vectors: the same ranking
    assert (mem0["recall@1"], mem0["recall@3"]) == (dense["recall@1"], dense["recall@3"])
