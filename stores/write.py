"""The one write path into tree memory: exact-duplicate check, embed once, one batched add."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
from langchain_core.embeddings import Embeddings

from hippograph.stores.embedders import embed_array
from hippograph.stores.models import MemoryItem
from hippograph.stores.tree.base import TreeStore

_TURN_NAMESPACE = uuid.UUID("5f0c2a43-8f6e-4a8e-9d57-2b0e4f1c7a11")


def stable_id(*parts: str) -> str:
    """A deterministic memory id from its origin (cube, session, message id): replays write the same id."""
    return str(uuid.uuid5(_TURN_NAMESPACE, "\x1f".join(parts)))


def write_memories(
    tree: TreeStore,
    embeddings: Embeddings,
    items: Sequence[MemoryItem],
    *,
    vectors: np.ndarray | None = None,
) -> tuple[list[str], int]:
    """Write items, skipping exact duplicates (same content hash in the same cube, active).

    Returns the id that now holds each item's content (an existing id for duplicates), in input order, and
    how many were newly written. `vectors`, when given, are the items' embeddings (no re-embedding).
    """
    if not items:
        return [], 0
    existing: dict[tuple[str, str], str] = {}
    for cube_id in {i.cube_id for i in items}:
        hashes = [i.content_hash for i in items if i.cube_id == cube_id]
        existing.update({(cube_id, h): mid for h, mid in tree.find_by_hash(cube_id, hashes).items()})
    stored = set(m.id for m in tree.get([i.id for i in items]))
    result: list[str] = []
    new: list[int] = []
    for index, item in enumerate(items):
        key = (item.cube_id, item.content_hash)
        if item.id in stored:  # a replay of a write that already happened: same id, nothing to do
            result.append(item.id)
        elif key in existing:
            result.append(existing[key])
        else:
            existing[key] = item.id
            result.append(item.id)
            new.append(index)
    if new:
        if vectors is None:
            todo = [i for i in new if items[i].embedding is None]
            computed = embed_array(embeddings, [items[i].index_text for i in todo]) if todo else None
            for row, i in enumerate(todo):
                items[i].embedding = computed[row].tolist()  # type: ignore[index]
        else:
            for i in new:
                items[i].embedding = vectors[i].tolist()
        tree.add([items[i] for i in new])
    return result, len(new)
