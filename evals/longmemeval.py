"""LongMemEval (original schema): write each question's haystack sessions through `Memory.ingest`, ask the
question through `Memory.search`, and score turn- and session-level recall per question type.

Parsing is `evals.loaders.load_longmemeval`; the haystack goes in as conversations (`longmemeval_ingest_input`:
one entry per session, role as speaker, the session date as every turn's time) through the one turn model, into
one cube per question, with the product's default stores. BM25 and dense baselines index the same raw turns.

Metrics per question (categories = `question_type`):
- recall@k: share of the evidence turns (`has_answer`) among the top-k turns (questions with evidence turns);
- session_recall@k: share of `answer_session_ids` among the sessions of the top-k turns;
- session_any@k: an answer session among the first k distinct sessions of the hits.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hippograph.evals.loaders import LongMemEvalItem, load_longmemeval, longmemeval_ingest_input
from hippograph.evals.locomo import (
    DEFAULT_KS,
    EVAL_USER,
    MemoryRetriever,
    Retriever,
    SystemResult,
    ask,
    open_memory,
    seed_everything,
)

__all__ = ["load_longmemeval", "run_longmemeval", "session_recall", "turn_docs"]

SYSTEMS = ("hippograph", "bm25", "dense")


def session_recall(answer_sessions: Sequence[str], retrieved_sessions: Sequence[str], k: int) -> float:
    """Share of answer sessions among the sessions of the first k hits."""
    gold = set(answer_sessions)
    return len(gold & set(retrieved_sessions[:k])) / len(gold) if gold else 0.0


def turn_docs(item: LongMemEvalItem) -> list[tuple[str, str, bool]]:
    """(dia_id `<session_id>:<position>`, text, has_answer) of every non-empty haystack turn."""
    return [(f"{s['session_id']}:{i}", str(t.get("content") or ""), bool(t.get("has_answer", False)))
            for s in item.sessions for i, t in enumerate(s["turns"]) if str(t.get("content") or "").strip()]


def _session_of(dia_id: str) -> str:
    return dia_id.rsplit(":", 1)[0]


def run_longmemeval(data: str | Path | None = None, *, ks: Sequence[int] = DEFAULT_KS, limit: int | None = None,
                    systems: Sequence[str] = SYSTEMS, work_dir: str | Path | None = None, embeddings: Any = None,
                    progress: bool = True) -> dict[str, Any]:
    """The LongMemEval retrieval eval; returns the report (same shape as LoCoMo's, plus session_recall@k)."""
    from tqdm import tqdm

    from hippograph.evals.baselines import BM25Baseline, CachedEmbeddings, DenseBaseline
    from hippograph.stores.embedders import MiniLMEmbeddings

    seed_everything()
    ks = sorted(set(int(k) for k in ks))
    items = load_longmemeval(data)[:limit] if limit else load_longmemeval(data)
    embeddings = embeddings or CachedEmbeddings(MiniLMEmbeddings())
    tmp = tempfile.TemporaryDirectory(prefix="hippograph-lme-") if work_dir is None else None
    root = Path(work_dir or tmp.name)  # type: ignore[union-attr]
    memory = open_memory(root / "hippograph", embeddings=embeddings) if "hippograph" in systems else None
    results = {name: SystemResult(name) for name in systems}
    session_hits: dict[str, dict[int, list[float]]] = {name: {k: [] for k in ks} for name in systems}
    try:
        for item in tqdm(items, desc="longmemeval", disable=not progress):
            docs = turn_docs(item)
            evidence = [d for d, _, has in docs if has]
            for name in systems:
                start = time.perf_counter()
                retrieve: Retriever
                if name == "hippograph":
                    assert memory is not None
                    cube_id = f"{EVAL_USER}.lme-{re.sub(r'[^A-Za-z0-9_.:@-]', '-', item.question_id)}"
                    memory.create_cube(cube_id, user_id=EVAL_USER)
                    memory.ingest(user_id=EVAL_USER, cube_id=cube_id, conversations=longmemeval_ingest_input(item))
                    retrieve = MemoryRetriever(memory, cube_id)
                elif name == "bm25":
                    retrieve = BM25Baseline([(d, t) for d, t, _ in docs]).retrieve
                elif name == "dense":
                    retrieve = DenseBaseline([(d, t) for d, t, _ in docs], embeddings).retrieve
                else:
                    raise ValueError(f"unknown system {name!r}")
                results[name].ingest_seconds += time.perf_counter() - start
                results[name].ingest_turns += len(docs)
                got = ask(results[name], retrieve, item.question, max(ks), category=item.question_type or "all",
                          evidence=evidence, session_of=_session_of)
                # session-level: the evidence is the answer sessions (a question may have no evidence turns)
                results[name].rows[-1].evidence_sessions = list(item.answer_session_ids)
                for k in ks:
                    session_hits[name][k].append(session_recall(item.answer_session_ids,
                                                                [_session_of(g) for g in got], k))
    finally:
        if memory is not None:
            memory.close()
        if tmp is not None:
            tmp.cleanup()
    summaries: dict[str, Any] = {}
    for name in systems:
        summary = results[name].summary(ks)
        for k in ks:
            values = session_hits[name][k]
            summary[f"session_recall@{k}"] = round(sum(values) / len(values), 4) if values else 0.0
        summaries[name] = summary
    return {
        "questions": len(items),
        "questions_note": "turn recall over has_answer turns; session_any over answer_session_ids",
        "systems": summaries,
        "config": {"ks": ks, "write_path": "Memory.ingest(conversations=...)", "read_path": "Memory.search",
                   "embedder": "all-MiniLM-L6-v2 (int8 ONNX)"},
        "qa": {"skipped": True, "reason": "retrieval only"},
    }
