"""threshold: drop memories under a relevance floor (relative to the best), keep a minimum, cut to top_k."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.state import ChatContext, ChatState
from hippograph.stores.models import SearchHit
from hippograph.stores.services import Services


def apply_threshold(
    hits: list[SearchHit], *, top_k: int, floor: float, min_keep: int
) -> tuple[list[SearchHit], list[dict[str, Any]]]:
    """Keep hits scoring at least `floor` x the best score, never fewer than `min_keep`, at most `top_k`."""
    if not hits:
        return [], []
    best = hits[0].score or 1.0
    kept: list[SearchHit] = []
    dropped: list[dict[str, Any]] = []
    for hit in hits:
        relative = hit.score / best if best else 0.0
        if len(kept) >= top_k:
            dropped.append({"id": hit.id, "score": hit.score, "reason": f"beyond top_k={top_k}"})
        elif relative < floor and len(kept) >= min_keep:
            dropped.append({"id": hit.id, "score": hit.score,
                            "reason": f"relative score {relative:.3f} < floor {floor:.3f}"})
        else:
            kept.append(hit.model_copy(update={"scores": {**hit.scores, "relative": relative}}))
    return kept, dropped


def make_threshold(services: Services) -> Node:
    @timed("threshold")
    def threshold(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        ctx = runtime.context or ChatContext()
        kept, dropped = apply_threshold(
            state.get("memories", []), top_k=ctx.top_k, floor=ctx.threshold, min_keep=min(ctx.min_keep, ctx.top_k)
        )
        shared = state.get("shared_cubes") or {}
        kept = [h.model_copy(update={"shared_by": shared[h.item.cube_id]}) if h.item.cube_id in shared else h
                for h in kept]
        return {"memories": kept, "dropped": dropped}

    return threshold
