"""dedup: decide what to write for this document (the write node embeds it, step by step).

Against the registered previous version (`stores.documents.diff_chunks`): unchanged chunks keep their memory,
changed chunks will supersede theirs, new chunks are added, vanished chunks archived. Against the whole cube:
a chunk whose exact content (content hash) is already an active memory is not written again — the write path
(`write_memories`) maps it to the existing memory. Only memories that will really be written get embedded,
by the write node, in steps of `ingest_batch` chunks (a big file streams: embed a step, write it, report it).
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.ingest_state import DocState, IngestContext
from hippograph.stores.documents import DocumentRegistry, diff_chunks
from hippograph.stores.models import MemoryItem
from hippograph.stores.services import Services


def make_dedup(services: Services, documents: DocumentRegistry) -> Node:
    tree = services.tree

    @timed("dedup")
    def dedup(state: DocState, runtime: Runtime[IngestContext]) -> dict[str, Any]:
        cube = state["cube_id"]
        chunk_items: list[MemoryItem] = state["chunk_items"]
        derived: dict[int, list[MemoryItem]] = state.get("derived") or {}
        previous = documents.get(cube, state["doc_key"])
        old = previous.chunks if previous is not None and previous.status == "active" else []
        diff = diff_chunks([c.content_hash for c in old], [i.content_hash for i in chunk_items])
        plan = {
            "keep": [(old[o].memory_id, n) for o, n in diff.keep],
            "supersede": [(old[o].memory_id, n) for o, n in diff.supersede],
            "add": list(diff.add),
            "archive": [old[o].memory_id for o in diff.archive]
            + [d for o, _ in diff.supersede for d in old[o].derived_ids]
            + [d for o in diff.archive for d in old[o].derived_ids],
            "kept_derived": {n: old[o].derived_ids for o, n in diff.keep},
            "old_sections": dict(previous.sections) if previous is not None else {},
            "old_chunk_ids": [c.memory_id for c in old],
        }
        # Candidates to write: structure nodes, added and superseding chunks and their derived facts.
        fresh = [n for n in diff.add] + [n for _, n in diff.supersede]
        candidates = list(state["structure"]) + [chunk_items[n] for n in fresh]
        candidates += [fact for n in fresh for fact in derived.get(n, [])]
        stored = {m.id for m in tree.get([c.id for c in candidates])}
        present = tree.find_by_hash(cube, [c.content_hash for c in candidates])
        plan["duplicates"] = sum(1 for c in candidates if c.id not in stored and c.content_hash in present)
        return {"plan": plan}

    return dedup
