"""enrich: working memory — refresh the bounded, ranked set that `retrieve_tree` reads first.

Per user session, at most `WORKING_MEMORY_SIZE` WorkingMemory items mirror the session's most useful
memories: derived facts first, then raw turns, newest first (score = recency decay + a bonus for facts and for
memories that many turns mention). Each mirror's id derives from (cube, session, source id), so a refresh
rewrites the same rows; mirrors that fall out of the top set are deleted.
"""

from __future__ import annotations

import time
from typing import Any

from hippograph.nodes._timing import Node
from hippograph.nodes.enrich_common import WORKING_MEMORY_SIZE, EnrichState, node_update
from hippograph.nodes.enrich_dedup import candidate_vectors
from hippograph.stores.models import MemoryItem, MemoryType, SourceRef
from hippograph.stores.services import Services
from hippograph.stores.write import stable_id


def rank_working_set(items: list[MemoryItem], size: int = WORKING_MEMORY_SIZE) -> list[tuple[float, MemoryItem]]:
    """Score and pick the working set: recency decay (newest = 1), +0.5 derived fact, +0.1 per extra mention."""
    ordered = sorted(items, key=lambda m: (m.created_at, m.id), reverse=True)
    scored = []
    for position, item in enumerate(ordered):
        score = 0.5 ** (position / 8.0)
        if item.source == "enrichment":
            score += 0.5
        score += 0.1 * min(5, int(item.metadata.get("mentions", 1)) - 1)
        scored.append((score, item))
    scored.sort(key=lambda pair: (-pair[0], pair[1].id))
    return scored[:size]


def make_enrich_working(services: Services) -> Node:
    def working_memory(state: EnrichState) -> dict[str, Any]:
        start = time.perf_counter()
        cube, user, session = state["cube_id"], state["user_id"], state.get("session_id")
        if not session:
            return node_update("working_memory", start, {"working": []})
        tree = services.tree
        pool = [m for m in tree.list(cube_ids=[cube], session_id=session, limit=300)
                if m.memory_type not in (MemoryType.WORKING, MemoryType.TOPIC)]
        chosen = rank_working_set(pool)
        vectors = candidate_vectors(services, [m for _, m in chosen])
        mirrors = []
        for rank, ((score, item), vec) in enumerate(zip(chosen, vectors, strict=True)):
            mirrors.append(MemoryItem(
                id=stable_id(cube, session, "working", item.id), user_id=user, cube_id=cube, text=item.text,
                key=item.key or "working memory", memory_type=MemoryType.WORKING, source="enrichment",
                source_refs=[SourceRef(kind="memory", ref=item.id)], session_id=session,
                turn_index=item.turn_index, parent_id=item.parent_id, created_at=item.created_at,
                metadata={"source_id": item.id, "rank": rank, "score": round(score, 4)},
                embedding=vec.tolist(),
            ))
        if mirrors:
            tree.add(mirrors)
        keep = {m.id for m in mirrors}
        stale = [m.id for m in tree.list(cube_ids=[cube], session_id=session, memory_type=MemoryType.WORKING.value,
                                         limit=1000) if m.id not in keep]
        if stale:
            tree.delete(stale, hard=True)
        return node_update("working_memory", start, {"working": [m.id for m in mirrors]})

    return working_memory
