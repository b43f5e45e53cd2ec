"""retrieve_tree: hybrid recall from tree memory — dense + full text + graph neighbours + working memory.

Every candidate keeps the score and rank each signal gave it; fusion is the rerank node's job.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langgraph.runtime import Runtime

from graphs.services import Services
from graphs.state import ChatContext, ChatState
from nodes._timing import timed
from nodes.recall_config import RecallConfig
from nodes.rerank import recall_config
from stores.embedders import embed_array
from stores.models import MemoryItem, MemoryType, SearchHit


def merge_hits(*lists: Iterable[SearchHit]) -> dict[str, SearchHit]:
    """Merge signal lists by memory id, keeping every signal's score and rank."""
    merged: dict[str, SearchHit] = {}
    for hits in lists:
        for hit in hits:
            seen = merged.get(hit.id)
            if seen is None:
                merged[hit.id] = hit.model_copy(deep=False)
            else:
                seen.scores = {**seen.scores, **hit.scores}
                seen.ranks = {**seen.ranks, **hit.ranks}
    return merged


def recall(services: Services, query: str, vector: list[float], *, cube_ids: list[str], pool: int,
           session_id: str | None = None, write_cube_id: str | None = None,
           cfg: RecallConfig | None = None) -> list[SearchHit]:
    cfg = cfg or RecallConfig()
    tree = services.tree
    dense, lexical = tree.hybrid_search(vector, query, cube_ids=cube_ids, k=pool)
    merged = merge_hits(dense, lexical)
    if session_id and write_cube_id and cfg.working_memory_limit:
        working = tree.list(cube_ids=[write_cube_id], session_id=session_id,
                            memory_type=MemoryType.WORKING.value, limit=cfg.working_memory_limit)
        merged = merge_hits(
            merged.values(),
            [SearchHit(item=m, scores={"working": 1.0}, ranks={"working": r}) for r, m in enumerate(working)],
        )
    ordered = sorted(merged.values(), key=_seed_order)[: cfg.expand_seeds]
    if ordered:
        near = tree.neighbours([h.id for h in ordered], cube_ids=cube_ids, window=cfg.expand_window)
        merged = merge_hits(merged.values(), _graph_hits(ordered, near, cfg.expand_window))
    return list(merged.values())


def _graph_hits(seeds: list[SearchHit], near: list[MemoryItem], window: int) -> list[SearchHit]:
    """Neighbours as a `graph` signal: a neighbour ranks where its best seed ranked (adjacent turns of a seed
    share its session and sit within the window; parents/children of a seed take that seed's rank too)."""
    rank_of_turn: dict[tuple[str, str | None], list[tuple[int, int]]] = {}
    for rank, seed in enumerate(seeds):
        if seed.item.turn_index is not None:
            rank_of_turn.setdefault((seed.item.cube_id, seed.item.session_id), []).append(
                (seed.item.turn_index, rank))
    hits = []
    for fallback, item in enumerate(near):
        ranks = [r for t, r in rank_of_turn.get((item.cube_id, item.session_id), [])
                 if item.turn_index is not None and abs(t - item.turn_index) <= window]
        rank = min(ranks) if ranks else len(seeds) + fallback
        hits.append(SearchHit(item=item, scores={"graph": 1.0 / (1 + rank)}, ranks={"graph": rank}))
    hits.sort(key=lambda h: h.ranks["graph"])
    return hits


def _seed_order(hit: SearchHit) -> float:
    # Best rank in any primary signal first.
    return min(hit.ranks.get("vector", 10**6), hit.ranks.get("bm25", 10**6))


def make_retrieve_tree(services: Services):  # type: ignore[no-untyped-def]
    @timed("retrieve_tree")
    def retrieve_tree(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        ctx = runtime.context or ChatContext()
        cfg = recall_config(services, ctx)
        query = state["query"]
        vector = state.get("query_vector") or embed_array(services.embeddings, [query])[0].tolist()
        candidates = recall(
            services, query, vector, cube_ids=state["read_cube_ids"], pool=cfg.pool(ctx.top_k),
            session_id=state.get("session_id"), write_cube_id=state.get("write_cube_id"), cfg=cfg,
        )
        return {"candidates": candidates, "query_vector": vector}

    return retrieve_tree
