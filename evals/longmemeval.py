"""LongMemEval (original schema): ingest each question's haystack sessions, ask the question through the search
graph, and score `answer_session_ids` recall@k (share of answer sessions among the sessions of the top-k hits).

Parsing is `evals.loaders.load_longmemeval`; each turn becomes one memory whose key carries the role, the session
date and the turn it replies to (the same index-time context as LoCoMo).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evals.loaders import LongMemEvalItem, load_longmemeval
from evals.locomo import DEFAULT_KS, EVAL_USER, PREVIOUS_CHARS, open_services, seed_everything
from stores.models import MemoryItem, SourceRef, content_hash
from stores.write import stable_id, write_memories

__all__ = ["item_memories", "load_longmemeval", "run_longmemeval", "session_recall"]


def item_memories(item: LongMemEvalItem, *, user_id: str, cube_id: str) -> list[MemoryItem]:
    memories: list[MemoryItem] = []
    for session in item.sessions:
        previous: tuple[str, str] | None = None
        for index, turn in enumerate(session["turns"]):
            text = str(turn.get("content") or "").strip()
            if not text:
                continue
            role = str(turn.get("role") or "user")
            key = f"{role} on {session['date']}" if session.get("date") else role
            if previous is not None:
                key += f" | replying to {previous[0]}: {previous[1][:PREVIOUS_CHARS]}"
            ref = f"{session['session_id']}:{index}"
            memories.append(MemoryItem(
                id=stable_id(cube_id, item.question_id, ref), user_id=user_id, cube_id=cube_id,
                text=text[:32_000], key=key, source="conversation",
                source_refs=[SourceRef(kind="turn", ref=ref, extra={"session_id": session["session_id"],
                                                                   "date": session.get("date")})],
                session_id=str(session["session_id"]), turn_index=index,
                content_hash=content_hash(f"{ref}\n{key}\n{text}"),
                metadata={"has_answer": bool(turn.get("has_answer", False)), "session_id": session["session_id"]},
            ))
            previous = (role, text)
    return memories


def session_recall(answer_sessions: Sequence[str], retrieved_sessions: Sequence[str], k: int) -> float:
    gold = set(answer_sessions)
    return len(gold & set(retrieved_sessions[:k])) / len(gold) if gold else 0.0


def run_longmemeval(data: str | Path | None = None, *, ks: Sequence[int] = DEFAULT_KS, limit: int | None = None,
                    work_dir: str | Path | None = None, embeddings: Any = None, progress: bool = True
                    ) -> dict[str, Any]:
    """Session-level recall@k of `answer_session_ids` (k counts retrieved turns, mapped to their sessions)."""
    from tqdm import tqdm

    from graphs.search import build_search_graph
    from graphs.state import ChatContext

    seed_everything()
    ks = sorted(set(int(k) for k in ks))
    items = load_longmemeval(data)[:limit] if limit else load_longmemeval(data)
    tmp = tempfile.TemporaryDirectory(prefix="hippograph-lme-") if work_dir is None else None
    root = Path(work_dir or tmp.name)  # type: ignore[union-attr]
    services = open_services(root / "hippograph", embeddings=embeddings)
    graph = build_search_graph(services)
    per_k: dict[int, list[float]] = {k: [] for k in ks}
    latencies: list[float] = []
    turns = 0
    ingest_seconds = 0.0
    try:
        services.registry.create_user(EVAL_USER)
        for item in tqdm(items, desc="longmemeval", disable=not progress):
            cube_id = f"{EVAL_USER}.lme-{re.sub(r'[^A-Za-z0-9_.:@-]', '-', item.question_id)}"
            services.registry.create_cube(EVAL_USER, cube_id)
            memories = item_memories(item, user_id=EVAL_USER, cube_id=cube_id)
            start = time.perf_counter()
            write_memories(services.tree, services.embeddings, memories)
            ingest_seconds += time.perf_counter() - start
            turns += len(memories)
            start = time.perf_counter()
            out = graph.invoke({"query": item.question}, context=ChatContext(
                user_id=EVAL_USER, cube_ids=[cube_id], top_k=max(ks), threshold=0.0, min_keep=0, ingest=False))
            latencies.append((time.perf_counter() - start) * 1000.0)
            sessions = [h.item.session_id or "" for h in out.get("memories", [])]
            for k in ks:
                per_k[k].append(session_recall(item.answer_session_ids, list(dict.fromkeys(sessions[:k])), k))
    finally:
        services.close()
        if tmp is not None:
            tmp.cleanup()
    lat = np.array(latencies or [0.0])
    return {
        "questions": len(items),
        "questions_note": "answer_session_ids recall",
        "systems": {"hippograph": {
            **{f"recall@{k}": round(float(np.mean(v)), 4) if v else 0.0 for k, v in per_k.items()},
            "search_p50_ms": round(float(np.percentile(lat, 50)), 2),
            "search_p95_ms": round(float(np.percentile(lat, 95)), 2),
            "ingest_turns_per_s": round(turns / ingest_seconds, 1) if ingest_seconds else None,
        }},
        "config": {"ks": ks, "metric": "answer_session_ids recall@k (top-k turns mapped to sessions)"},
        "qa": {"skipped": True, "reason": "retrieval only"},
    }
