"""rerank: fuse the recall signals into one ordering (weighted reciprocal-rank fusion + context propagation).

1. Weighted RRF over the per-signal ranks that retrieve_tree recorded (`vector`, `bm25`, `graph`, `working`).
2. Context propagation: a turn sitting next to a strongly matching turn of the same session (question and its
   answer, a story told over two turns) inherits a share of its neighbour's fused score. Conversations spread
   one fact over adjacent turns, so adjacency is evidence of relevance.
3. Optional MMR (maximal marginal relevance) over the stored vectors, off by default (`MMR_LAMBDA = 1.0`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from graphs.services import Services
from graphs.state import ChatContext, ChatState
from nodes._timing import timed
from stores.models import SearchHit

RRF_K = 5
#: Weight of each signal in the fusion. Graph neighbours and working memory support, they do not lead.
SIGNAL_WEIGHTS = {"vector": 0.8, "bm25": 1.0, "graph": 0.1, "working": 0.3}
#: A remembered question (tagged by ingest) resembles new questions but answers none of them.
QUESTION_PENALTY = 0.5
#: Share of the best adjacent turn's fused score that a turn inherits (0 = off).
PROPAGATE = 0.6
#: Turns this close (same session) count as adjacent for propagation.
PROPAGATE_WINDOW = 1
#: MMR trade-off: 1.0 = pure relevance (off); lower values trade relevance for diversity.
MMR_LAMBDA = 1.0
MMR_DEPTH = 30


def _rrf(hit: SearchHit) -> float:
    rrf = sum(w / (RRF_K + 1 + hit.ranks[s]) for s, w in SIGNAL_WEIGHTS.items() if s in hit.ranks)
    if "question" in hit.item.tags:
        rrf *= QUESTION_PENALTY
    return rrf


def _propagate(hits: list[SearchHit], base: list[float]) -> list[float]:
    if PROPAGATE <= 0:
        return base
    position: dict[tuple[str, str], dict[int, float]] = {}
    for hit, score in zip(hits, base, strict=True):
        item = hit.item
        if item.session_id is not None and item.turn_index is not None:
            position.setdefault((item.cube_id, item.session_id), {})[item.turn_index] = score
    out = []
    for hit, score in zip(hits, base, strict=True):
        item = hit.item
        turns = position.get((item.cube_id, item.session_id or ""), {}) if item.turn_index is not None else {}
        near = [turns.get(item.turn_index + d, 0.0) for d in range(-PROPAGATE_WINDOW, PROPAGATE_WINDOW + 1)
                if d] if turns and item.turn_index is not None else []
        out.append(score + PROPAGATE * max(near, default=0.0))
    return out


def fuse(candidates: list[SearchHit]) -> list[SearchHit]:
    """Order candidates by weighted RRF (+ propagation); `score` becomes the fused score, `scores["rrf"]` too."""
    base = [_rrf(hit) for hit in candidates]
    final = _propagate(candidates, base)
    fused = [
        hit.model_copy(update={"score": score, "scores": {**hit.scores, "rrf": rrf}})
        for hit, rrf, score in zip(candidates, base, final, strict=True)
    ]
    fused.sort(key=lambda h: (-h.score, -h.scores.get("vector", 0.0)))
    return fused


def mmr(hits: list[SearchHit], vectors: dict[str, np.ndarray], *, lam: float = MMR_LAMBDA,
        depth: int = MMR_DEPTH) -> list[SearchHit]:
    """Reorder the first `depth` hits by maximal marginal relevance (relevance = normalised fused score)."""
    if lam >= 1.0 or len(hits) < 3:
        return hits
    head, tail = hits[:depth], hits[depth:]
    top = head[0].score or 1.0
    chosen: list[SearchHit] = []
    chosen_vecs: list[np.ndarray] = []
    pool = list(head)
    while pool:
        best, best_value = 0, -np.inf
        for i, hit in enumerate(pool):
            vec = vectors.get(hit.id)
            redundancy = max((float(vec @ v) for v in chosen_vecs), default=0.0) if vec is not None else 0.0
            value = lam * hit.score / top - (1 - lam) * redundancy
            if value > best_value:
                best, best_value = i, value
        hit = pool.pop(best)
        chosen.append(hit)
        if (vec := vectors.get(hit.id)) is not None:
            chosen_vecs.append(vec)
    return chosen + tail


def make_rerank(services: Services):  # type: ignore[no-untyped-def]
    @timed("rerank")
    def rerank(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        fused = fuse(state.get("candidates", []))
        if MMR_LAMBDA < 1.0 and fused:
            vectors_of = getattr(services.tree, "embeddings", None)
            if vectors_of is not None:
                fused = mmr(fused, vectors_of([h.id for h in fused[:MMR_DEPTH]]))
        return {"memories": fused}

    return rerank
