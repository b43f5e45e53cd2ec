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
from stores.embedders import embed_array
from stores.models import MemoryType, SearchHit

#: Candidates each signal contributes, as a multiple of top_k (recall needs a deeper pool than the answer).
POOL_FACTOR = 4
MIN_POOL = 40
#: How many of the best seeds get their graph neighbours (adjacent turns, parents, children) pulled in.
EXPAND_SEEDS = 5
WORKING_MEMORY_LIMIT = 20


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
           session_id: str | None = None, write_cube_id: str | None = None) -> list[SearchHit]:
    tree = services.tree
    dense = tree.vector_search(vector, cube_ids=cube_ids, k=pool)
    lexical = tree.text_search(query, cube_ids=cube_ids, k=pool)
    merged = merge_hits(dense, lexical)
    if session_id and write_cube_id:
        working = tree.list(cube_ids=[write_cube_id], session_id=session_id,
                            memory_type=MemoryType.WORKING.value, limit=WORKING_MEMORY_LIMIT)
        merged = merge_hits(
            merged.values(),
            [SearchHit(item=m, scores={"working": 1.0}, ranks={"working": r}) for r, m in enumerate(working)],
        )
    seeds = [h.id for h in sorted(merged.values(), key=_seed_order)[:EXPAND_SEEDS]]
    if seeds:
        near = tree.neighbours(seeds, cube_ids=cube_ids, window=1)
        merged = merge_hits(
            merged.values(),
            [SearchHit(item=m, scores={"graph": 1.0}, ranks={"graph": r}) for r, m in enumerate(near)],
        )
    return list(merged.values())


def _seed_order(hit: SearchHit) -> float:
    # Best rank in any primary signal first.
    return min(hit.ranks.get("vector", 10**6), hit.ranks.get("bm25", 10**6))


def make_retrieve_tree(services: Services):  # type: ignore[no-untyped-def]
    @timed("retrieve_tree")
    def retrieve_tree(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        ctx = runtime.context or ChatContext()
        query = state["query"]
        vector = embed_array(services.embeddings, [query])[0].tolist()
        candidates = recall(
            services, query, vector, cube_ids=state["read_cube_ids"], pool=max(MIN_POOL, ctx.top_k * POOL_FACTOR),
            session_id=state.get("session_id"), write_cube_id=state.get("write_cube_id"),
        )
        return {"candidates": candidates, "query_vector": vector}

    return retrieve_tree
