"""retrieve_tree: hybrid recall from tree memory — dense + full text + graph neighbours + working memory, and
(when their weights are on) the entity graph, a second pseudo-relevance-feedback round and the query's period.

Every candidate keeps the score and rank each signal gave it; fusion is the rerank node's job. With `as_of`
(time-travel search) recall reads what was true then: superseded memories too, each kept only if it was valid
at `as_of` (`nodes/time_grounding.valid_at`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.rerank import recall_config
from hippograph.nodes.state import ChatContext, ChatState
from hippograph.nodes.time_grounding import event_time, query_window, valid_at
from hippograph.nodes.turns import speaker_of
from hippograph.stores.embedders import embed_query_vector
from hippograph.stores.entities import query_entity_names
from hippograph.stores.models import MemoryItem, MemoryStatus, SearchHit
from hippograph.stores.recall_config import RecallConfig
from hippograph.stores.services import Services
from hippograph.stores.text import WORD
from hippograph.stores.tree.base import RecallQuery, TreeStore


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
           cfg: RecallConfig | None = None, as_of: float | None = None) -> list[SearchHit]:
    cfg = cfg or RecallConfig()
    tree = services.tree
    # Time travel reads superseded versions too; `valid_at` below keeps those that were true at `as_of`.
    statuses = (MemoryStatus.ACTIVE,) if as_of is None else (MemoryStatus.ACTIVE, MemoryStatus.SUPERSEDED)
    query_names = query_entity_names(query) if cfg.weights.entity > 0 or cfg.weights.prf > 0 else []
    first = tree.recall_round(RecallQuery(
        vector=vector, text=query, cube_ids=cube_ids, k=pool, statuses=statuses,
        entity_names=query_names if cfg.weights.entity > 0 else (), entity_k=cfg.entity_pool,
        working_cube_id=write_cube_id if session_id else None, working_session_id=session_id,
        working_limit=cfg.working_memory_limit, expand=cfg.expand_seeds, expand_window=cfg.expand_window,
    ))
    merged = merge_hits(tied_ranks(first.dense, "vector"), tied_ranks(found_by_text(first.lexical), "bm25"),
                        tied_ranks(first.entity, "entity"),
                        [SearchHit(item=m, scores={"working": 1.0}, ranks={"working": r})
                         for r, m in enumerate(first.working)])
    ordered = sorted(merged.values(), key=_seed_order)[: cfg.expand_seeds]
    if ordered:
        seed_ids = [h.id for h in ordered]
        near = first.near.of(seed_ids) if first.near is not None else None
        if near is None:  # a seed outside the read-ahead (or none was read ahead)
            near = tree.neighbours(seed_ids, cube_ids=cube_ids, window=cfg.expand_window)
        merged = merge_hits(merged.values(), _graph_hits(ordered, near, cfg.expand_window))
    if cfg.weights.prf > 0:
        seeds = sorted(merged.values(), key=_seed_order)[: cfg.prf_seeds]
        merged = merge_hits(merged.values(), feedback_hits(tree, seeds, query_names, cfg, cube_ids=cube_ids,
                                                           statuses=statuses))
    hits = list(merged.values())
    if as_of is not None:
        hits = [h for h in hits if valid_at(h.item, as_of)]
    if cfg.weights.time > 0:
        hits = with_time_signal(hits, query, as_of)
    if cfg.speaker_boost > 0:
        hits = with_speaker_signal(hits, query)
    return hits


#: A BM25 score at or under this did not find the memory: FTS5 clamps the IDF of a word most memories hold
#: to 1e-6, so in a small cube "where does ana live" "matches" every memory keyed "ana said" with score 0.
BM25_FLOOR = 1e-4


def found_by_text(hits: list[SearchHit]) -> list[SearchHit]:
    """Only the full-text hits whose words told them apart (score above `BM25_FLOOR`)."""
    return [h for h in hits if h.scores.get("bm25", 0.0) > BM25_FLOOR]


def tied_ranks(hits: list[SearchHit], signal: str) -> list[SearchHit]:
    """Equal scores share a rank (the best of the tie), so a signal that cannot tell two memories apart never
    orders them: the other signals do. Ranks also close up after filtering."""
    out: list[SearchHit] = []
    rank, previous = -1, None
    for position, hit in enumerate(hits):
        score = hit.scores.get(signal)
        if previous is None or score is None or abs(score - previous) > 1e-9:
            rank = position
        previous = score
        out.append(hit.model_copy(update={"ranks": {**hit.ranks, signal: rank}}))
    return out


def feedback_hits(tree: TreeStore, seeds: Sequence[SearchHit], query_names: list[str], cfg: RecallConfig, *,
                  cube_ids: list[str], statuses: Sequence[MemoryStatus]) -> list[SearchHit]:
    """The second round (`prf` signal): the entities the best seeds share, with the query's own, through the
    entity graph. Multi-hop: "what do Ana's sister and her coach have in common" finds the sister's memory
    first, then the memories naming what that memory names."""
    mentioned = tree.mentions([s.id for s in seeds])
    counts = Counter(name for names in mentioned.values() for name in names if name not in query_names)
    extra = [name for name, _ in sorted(counts.items(), key=lambda nc: (-nc[1], nc[0]))[: cfg.prf_entities]]
    if not extra:
        return []
    hits = tree.entity_search([*query_names, *extra], cube_ids=cube_ids, k=cfg.entity_pool, statuses=statuses)
    return [SearchHit(item=h.item, scores={"prf": h.scores["entity"]}, ranks={"prf": rank})
            for rank, h in enumerate(hits)]


def with_time_signal(hits: list[SearchHit], query: str, as_of: float | None) -> list[SearchHit]:
    """A `time` signal for candidates that happened inside the period the query names (relative to `as_of`,
    default now), ranked among themselves by their best primary rank. No period in the query: no signal."""
    window = query_window(query, datetime.fromtimestamp(as_of, UTC) if as_of is not None else None)
    if window is None:
        return hits
    inside = sorted((h for h in hits if window.contains(event_time(h.item))), key=_seed_order)
    for rank, hit in enumerate(inside):
        hit.scores = {**hit.scores, "time": 1.0}
        hit.ranks = {**hit.ranks, "time": rank}
    return hits


def with_speaker_signal(hits: list[SearchHit], query: str) -> list[SearchHit]:
    """Mark (`scores["speaker"]`) the candidates spoken by a person the query names, every word of the name in
    the query ("Caroline", "Ana Silva"). A mark, not a rank: rerank multiplies the fused score
    (`RecallConfig.speaker_boost`), so it orders what the signals found and never finds anything itself."""
    words = {w.lower() for w in WORD.findall(query)}
    for hit in hits:
        speaker = speaker_of(hit.item)
        name = [w.lower() for w in WORD.findall(speaker)] if speaker else []
        if name and all(w in words for w in name):
            hit.scores = {**hit.scores, "speaker": 1.0}
    return hits


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


def make_retrieve_tree(services: Services) -> Node:
    @timed("retrieve_tree")
    def retrieve_tree(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        ctx = runtime.context or ChatContext()
        cfg = recall_config(services, ctx)
        query = state["query"]
        vector = state.get("query_vector") or embed_query_vector(services.embeddings, query)
        candidates = recall(
            services, query, vector, cube_ids=state["read_cube_ids"], pool=cfg.pool(ctx.top_k),
            session_id=state.get("session_id"), write_cube_id=state.get("write_cube_id"), cfg=cfg,
            as_of=ctx.as_of,
        )
        return {"candidates": candidates, "query_vector": vector}

    return retrieve_tree
