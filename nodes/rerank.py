"""rerank: fuse the recall signals into one ordering (weighted reciprocal-rank fusion)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graphs.services import Services
from graphs.state import ChatContext, ChatState
from nodes._timing import timed
from stores.models import SearchHit

RRF_K = 10
#: Weight of each signal in the fusion. Graph neighbours and working memory support, they do not lead.
SIGNAL_WEIGHTS = {"vector": 1.0, "bm25": 1.0, "graph": 0.1, "working": 0.3}
#: A remembered question (tagged by ingest) resembles new questions but answers none of them.
QUESTION_PENALTY = 0.5


def fuse(candidates: list[SearchHit]) -> list[SearchHit]:
    """Order candidates by weighted RRF; `score` becomes the fused score, `scores["rrf"]` too."""
    fused: list[SearchHit] = []
    for hit in candidates:
        rrf = sum(w / (RRF_K + 1 + hit.ranks[s]) for s, w in SIGNAL_WEIGHTS.items() if s in hit.ranks)
        if "question" in hit.item.tags:
            rrf *= QUESTION_PENALTY
        fused.append(hit.model_copy(update={"score": rrf, "scores": {**hit.scores, "rrf": rrf}}))
    fused.sort(key=lambda h: (-h.score, -h.scores.get("vector", 0.0)))
    return fused


def make_rerank(services: Services):  # type: ignore[no-untyped-def]
    @timed("rerank")
    def rerank(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        return {"memories": fuse(state.get("candidates", []))}

    return rerank
