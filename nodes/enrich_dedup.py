"""enrich: dedup/merge — each extracted fact is a duplicate (merged), an update (superseded next) or new.

Exact duplicates go by content hash first; near-duplicates by MinHash LSH over shingles plus embedding cosine
against the cube's nearest memories (`stores.dedup`). Raw conversation turns are never merge or supersede
targets: they are the record, and their ids and content never change.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hippograph.nodes._timing import Node
from hippograph.nodes.enrich_common import EnrichState, node_update
from hippograph.stores.dedup import Candidate, NearDuplicateIndex
from hippograph.stores.embedders import embed_array
from hippograph.stores.models import MemoryItem, MemoryStatus, MemoryType, SourceRef
from hippograph.stores.services import Services

_SKIP_TYPES = {MemoryType.TOPIC, MemoryType.WORKING}


def _candidates(services: Services, cube: str, texts: list[str], vectors: np.ndarray) -> list[MemoryItem]:
    tree = services.tree
    found: dict[str, MemoryItem] = {}
    for text, vector in zip(texts, vectors, strict=True):
        for hit in tree.vector_search(vector.tolist(), cube_ids=[cube], k=8) + tree.text_search(
                text, cube_ids=[cube], k=5):
            item = hit.item
            if item.memory_type in _SKIP_TYPES or item.source == "conversation":
                continue
            found.setdefault(item.id, item)
    return list(found.values())


def candidate_vectors(services: Services, items: list[MemoryItem]) -> np.ndarray:
    """Stored vectors when the backend exposes them, else re-embedded text."""
    if not items:
        return np.zeros((0, services.dimension), dtype=np.float32)
    stored = getattr(services.tree, "embeddings", None)
    got: dict[str, Any] = stored([i.id for i in items]) if callable(stored) else {}
    missing = [i for i in items if i.id not in got]
    if missing:
        fresh = embed_array(services.embeddings, [i.index_text for i in missing])
        got.update({m.id: fresh[r] for r, m in enumerate(missing)})
    return np.stack([np.asarray(got[i.id], dtype=np.float32) for i in items])


def make_enrich_dedup(services: Services) -> Node:
    def dedup(state: EnrichState) -> dict[str, Any]:
        start = time.perf_counter()
        facts = state.get("facts", [])
        cube, user = state["cube_id"], state["user_id"]
        if not facts:
            return node_update("dedup", start, {"written": [], "merged": [], "updates": [], "decisions": []})
        texts = [f["text"] for f in facts]
        vectors = embed_array(services.embeddings, texts)
        existing = _candidates(services, cube, texts, vectors)
        index = NearDuplicateIndex()
        for item, vec in zip(existing, candidate_vectors(services, existing), strict=True):
            index.add(Candidate(id=item.id, text=item.text, vector=vec, content_hash=item.content_hash))
        by_id = {i.id: i for i in existing}
        written: list[str] = []
        merged: list[str] = []
        updates: list[dict[str, Any]] = []
        decisions: list[dict[str, Any]] = []
        to_add: list[MemoryItem] = []
        raw_ids = list(state.get("memory_ids", []))
        for fact, vec in zip(facts, vectors, strict=True):
            decision = index.decide(fact["text"], vec)
            decisions.append({"fact": fact["id"], "action": decision.action, "target": decision.target_id,
                              "cosine": round(decision.cosine, 4), "jaccard": round(decision.jaccard, 4),
                              "reason": decision.reason})
            if decision.action == "duplicate" and decision.target_id == fact["id"]:
                written.append(fact["id"])  # this job wrote it before a crash: same id, nothing new
                continue
            if decision.action == "duplicate" and decision.target_id is not None:
                target = by_id.get(decision.target_id)
                if target is not None:
                    refs = {(r.kind, r.ref) for r in target.source_refs}
                    extra = [SourceRef(kind="message", ref=m) for m in fact["message_ids"]
                             if ("message", m) not in refs]
                    if extra:
                        target.source_refs = [*target.source_refs, *extra]
                        target.metadata = {**target.metadata,
                                           "mentions": int(target.metadata.get("mentions", 1)) + 1}
                        services.tree.update(target)
                merged.append(decision.target_id)
                continue
            item = MemoryItem(
                id=fact["id"], user_id=user, cube_id=cube, text=fact["text"], key=f"{user} (fact)",
                memory_type=MemoryType.LONG_TERM, source="enrichment",
                source_refs=[*(SourceRef(kind="message", ref=m) for m in fact["message_ids"]),
                             *(SourceRef(kind="memory", ref=r) for r in raw_ids)],
                session_id=state.get("session_id"),
                metadata={"job_id": state.get("job_id", ""), "derived_from": raw_ids},
                embedding=vec.tolist(),
            )
            to_add.append(item)
            written.append(item.id)
            if decision.action == "update" and decision.target_id is not None:
                old = by_id.get(decision.target_id)
                if old is not None and old.status == MemoryStatus.ACTIVE:
                    updates.append({"old": decision.target_id, "new": item.id, "reason": decision.reason})
                index.remove(decision.target_id)
            index.add(Candidate(id=item.id, text=item.text, vector=vec, content_hash=item.content_hash))
        if to_add:
            services.tree.add(to_add)
        return node_update("dedup", start, {"written": written, "merged": merged, "updates": updates,
                                            "decisions": decisions})

    return dedup
