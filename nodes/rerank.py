"""rerank: fuse the recall signals into one ordering (weighted reciprocal-rank fusion + context propagation).

1. Weighted RRF over the per-signal ranks that retrieve_tree recorded (`vector`, `bm25`, `graph`, `working`).
2. Context propagation: a turn sitting next to a strongly matching turn of the same session (question and its
   answer, a story told over two turns) inherits a share of its neighbour's fused score. Conversations spread
   one fact over adjacent turns, so adjacency is evidence of relevance.
3. Speaker: a turn spoken by a person the query names (`scores["speaker"]`) scores `1 + speaker_boost` times.
4. Optional MMR (maximal marginal relevance) over the stored vectors, off by default (`mmr_lambda = 1.0`).

Every knob is a field of `RecallConfig` (`stores/recall_config.py`): the run's `ChatContext.recall`, else
`settings.recall`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.state import ChatContext, ChatState
from hippograph.stores.models import SearchHit
from hippograph.stores.recall_config import RecallConfig
from hippograph.stores.services import Services


def recall_config(services: Services, ctx: ChatContext | None) -> RecallConfig:
    """This run's recall tuning: the context's, else the deployment's settings."""
    return (ctx.recall if ctx is not None else None) or services.settings.recall


def _rrf(hit: SearchHit, cfg: RecallConfig) -> float:
    rrf = sum(cfg.weights.of(s) / (cfg.rrf_k + 1 + rank) for s, rank in hit.ranks.items())
    if "question" in hit.item.tags:
        rrf *= cfg.question_penalty
    return rrf


def _propagate(hits: list[SearchHit], base: list[float], cfg: RecallConfig) -> list[float]:
    if cfg.propagate <= 0:
        return base
    position: dict[tuple[str, str], dict[int, float]] = {}
    for hit, score in zip(hits, base, strict=True):
        item = hit.item
        if item.session_id is not None and item.turn_index is not None:
            position.setdefault((item.cube_id, item.session_id), {})[item.turn_index] = score
    window = cfg.propagate_window
    out = []
    for hit, score in zip(hits, base, strict=True):
        item = hit.item
        turns = position.get((item.cube_id, item.session_id or ""), {}) if item.turn_index is not None else {}
        near = [turns.get(item.turn_index + d, 0.0) for d in range(-window, window + 1)
                if d] if turns and item.turn_index is not None else []
        out.append(score + cfg.propagate * max(near, default=0.0))
    return _keep_dominance(hits, base, out, window)


def dominates(a: SearchHit, b: SearchHit) -> bool:
    """`a` beats `b` on every signal that found `b` (same or better rank in each, and found by each)."""
    return bool(b.ranks) and all(s in a.ranks and a.ranks[s] <= r for s, r in b.ranks.items())


def _keep_dominance(hits: list[SearchHit], base: list[float], final: list[float], window: int) -> list[float]:
    """Propagation may lift a turn, never above an adjacent turn that beats it on every signal (with a handful of
    memories, a neighbour's inherited score must not outrank the real hit)."""
    by_turn: dict[tuple[str, str, int], int] = {}
    for i, hit in enumerate(hits):
        if hit.item.session_id is not None and hit.item.turn_index is not None:
            by_turn[(hit.item.cube_id, hit.item.session_id, hit.item.turn_index)] = i
    out = list(final)
    for j, hit in enumerate(hits):
        item = hit.item
        if out[j] <= base[j] or item.session_id is None or item.turn_index is None:
            continue
        for d in range(-window, window + 1):
            other = by_turn.get((item.cube_id, item.session_id, item.turn_index + d))
            if other is not None and other != j and out[j] >= out[other] and dominates(hits[other], hit):
                out[j] = max(base[j], out[other] * (1 - 1e-6))
    return out


def _questions_last(hits: list[SearchHit]) -> list[SearchHit]:
    """Statements a content signal found first, then remembered questions, each group in fused order."""
    content = ("vector", "bm25", "entity", "prf")
    found = [h for h in hits if "question" not in h.item.tags and any(s in h.ranks for s in content)]
    seen = {h.id for h in found}
    return found + [h for h in hits if h.id not in seen]


def fuse(candidates: list[SearchHit], cfg: RecallConfig | None = None) -> list[SearchHit]:
    """Order candidates by weighted RRF (+ propagation); `score` becomes the fused score, `scores["rrf"]` too."""
    cfg = cfg or RecallConfig()
    base = [_rrf(hit, cfg) for hit in candidates]
    # The speaker mark scales the score after propagation: it says whose turn this is, which adjacent turns
    # (spoken by the other person) do not share.
    final = [score * (1.0 + cfg.speaker_boost) if "speaker" in hit.scores else score
             for hit, score in zip(candidates, _propagate(candidates, base, cfg), strict=True)]
    fused = [
        hit.model_copy(update={"score": score, "scores": {**hit.scores, "rrf": rrf}})
        for hit, rrf, score in zip(candidates, base, final, strict=True)
    ]
    fused.sort(key=lambda h: (-h.score, -h.scores.get("vector", 0.0)))
    return _questions_last(fused) if cfg.questions_last else fused


def mmr(hits: list[SearchHit], vectors: dict[str, np.ndarray], *, lam: float, depth: int) -> list[SearchHit]:
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


def rank(services: Services, candidates: list[SearchHit], cfg: RecallConfig) -> list[SearchHit]:
    """Fusion, then MMR when the config turns it on (it needs the stored vectors)."""
    fused = fuse(candidates, cfg)
    if cfg.mmr_lambda < 1.0 and fused:
        vectors_of = getattr(services.tree, "embeddings", None)
        if vectors_of is not None:
            fused = mmr(fused, vectors_of([h.id for h in fused[: cfg.mmr_depth]]), lam=cfg.mmr_lambda,
                        depth=cfg.mmr_depth)
    return fused


def make_rerank(services: Services) -> Node:
    @timed("rerank")
    def rerank(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        cfg = recall_config(services, runtime.context)
        return {"memories": rank(services, state.get("candidates", []), cfg)}

    return rerank
