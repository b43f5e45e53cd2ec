"""Helpers for enrichment tests: the chat fast path's write + job, as the chat graph does it."""

from __future__ import annotations

from typing import Any

from hippograph.nodes.enrich_common import ENRICH_KIND
from hippograph.stores.models import MemoryItem, MemoryStatus
from hippograph.stores.services import Services
from hippograph.stores.write import stable_id, write_memories


def fast_path_turn(services: Services, *, user: str, cube: str, session: str, index: int, user_text: str,
                   answer: str = "Noted.", message_id: str | None = None) -> tuple[str, str]:
    """Write the raw turn memory (stable id) and enqueue its enrichment job. Returns (memory id, job id)."""
    mid = message_id or f"{session}-m{index}"
    item = MemoryItem(id=stable_id(cube, session, mid), user_id=user, cube_id=cube, text=user_text,
                      session_id=session, turn_index=index, source="conversation")
    ids, _ = write_memories(services.tree, services.embeddings, [item])
    payload: dict[str, Any] = {
        "user_id": user, "cube_id": cube, "session_id": session, "thread_id": f"thread-{session}",
        "memory_ids": ids,
        "messages": [{"id": mid, "role": "human", "content": user_text},
                     {"id": f"{mid}-ai", "role": "ai", "content": answer}],
    }
    job = services.outbox.enqueue(ENRICH_KIND, payload, dedup_key=f"enrich:{mid}:{ids[-1]}")
    return ids[0], job


def memory_census(services: Services, cube: str) -> dict[str, int]:
    """How many memories of each type/status the cube holds (every status)."""
    counts: dict[str, int] = {}
    for m in services.tree.list(cube_ids=[cube], statuses=list(MemoryStatus), limit=100_000):
        key = f"{m.memory_type.value}/{m.status.value}"
        counts[key] = counts.get(key, 0) + 1
    return counts
