"""enrich: entities — ground the turn's time expressions into its index key and link it to the entities it names.

Runs in the deferred enrichment path only (after the answer was sent, or after a conversation was ingested),
never on the answer path: spaCy and dateparser cost milliseconds per turn that fast ingest must not pay.

For each memory of the job (the fast path's `memory_ids` and the facts enrichment wrote):
1. time grounding (`nodes/time_grounding.py`): "yesterday" said on 8 May 2023 adds "7 May 2023" to the key
   (idempotent; the id, text and vector never change, only what the full-text index sees);
2. entities (`stores/entities.py`): `MENTIONS` edges to the cube's `Entity` nodes (idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hippograph.nodes._timing import Node
from hippograph.nodes.enrich_common import ENRICH_KIND, EnrichState, node_update
from hippograph.nodes.time_grounding import event_time, grounded_key, time_labels
from hippograph.stores.entities import EntityExtractor, default_extractor, names_of
from hippograph.stores.models import MemoryItem, MemoryStatus, MemoryType
from hippograph.stores.services import Services
from hippograph.stores.tree.base import TreeStore

#: Memories per enrichment job an ingest schedules (a long conversation becomes several jobs).
INGEST_JOB_SIZE = 200


def key_phrases(text: str, top: int) -> list[str]:
    """The `top` keyphrases of a text (yake: statistical, offline, no model), best first."""
    import yake  # imported on first use: only enrichment with `Settings.key_keyphrases` needs it

    return [phrase for phrase, _ in yake.KeywordExtractor(lan="en", n=2, top=top).extract_keywords(text)]


def ground_times(tree: TreeStore, items: Sequence[MemoryItem], *, keyphrases: int = 0) -> int:
    """Append each memory's absolute dates (and its top `keyphrases` keyphrases) to its key; returns how many
    memories changed."""
    changed = 0
    for item in items:
        said = datetime.fromtimestamp(event_time(item), UTC)
        labels = time_labels(item.text, said)
        phrases = key_phrases(item.text, keyphrases) if keyphrases and item.text.strip() else []
        key = grounded_key(item.key, [*labels, *phrases])
        if key != item.key:
            item.key = key
            item.metadata = {**item.metadata, "time_refs": labels} if labels else item.metadata
            item.embedding = None  # keep the stored vector: only the lexical index sees the dates and phrases
            tree.update(item)
            changed += 1
    return changed


def link_entities(tree: TreeStore, items: Sequence[MemoryItem], extractor: EntityExtractor | None = None) -> int:
    """Extract each memory's entities and write its `MENTIONS` edges; returns how many edges were new."""
    if not items:
        return 0
    extractor = extractor or default_extractor()
    mentions = extractor.extract([item.text for item in items])
    found = {item.id: names_of(ms) for item, ms in zip(items, mentions, strict=True) if ms}
    return tree.add_mentions(found) if found else 0


def enrich_memories(tree: TreeStore, cube_id: str, ids: Sequence[str],
                    extractor: EntityExtractor | None = None, *, keyphrases: int = 0) -> dict[str, int]:
    """Time grounding (+ keyphrases) and entity links for these memories of one cube (active, not topics or
    working copies)."""
    items = [i for i in tree.get(list(dict.fromkeys(ids)), cube_ids=[cube_id])
             if i.status == MemoryStatus.ACTIVE and i.memory_type not in (MemoryType.TOPIC, MemoryType.WORKING)]
    return {"grounded": ground_times(tree, items, keyphrases=keyphrases),
            "mentions": link_entities(tree, items, extractor)}


def make_enrich_entities(services: Services) -> Node:
    def entities(state: EnrichState) -> dict[str, Any]:
        start = time.perf_counter()
        ids = [*state.get("memory_ids", []), *state.get("written", [])]
        enrich_memories(services.tree, state["cube_id"], ids, keyphrases=services.settings.key_keyphrases)
        return node_update("entities", start, {})

    return entities


def schedule_memories(services: Services, *, user_id: str, cube_id: str, memory_ids: Sequence[str]) -> list[str]:
    """Enqueue enrichment jobs (no messages: entities and time grounding only) for memories written outside a
    chat turn, e.g. an ingested conversation; returns the job ids. Idempotent per memory batch."""
    ids = list(dict.fromkeys(memory_ids))
    jobs = []
    for start in range(0, len(ids), INGEST_JOB_SIZE):
        batch = ids[start : start + INGEST_JOB_SIZE]
        payload = {"user_id": user_id, "cube_id": cube_id, "session_id": "", "thread_id": "", "memory_ids": batch,
                   "mode": "fast", "messages": []}
        key = f"entities:{cube_id}:{batch[0]}:{len(batch)}"
        jobs.append(services.outbox.enqueue(ENRICH_KIND, payload, dedup_key=key))
    return jobs


def make_schedule_ingest_enrichment(services: Services) -> Node:
    """Ingest graph node (after `summarize`): enrichment jobs for the memories this ingest added or changed, so
    ingested conversations and documents join the entity graph and get grounded dates, off the write path."""

    def schedule_enrichment(state: dict[str, Any]) -> dict[str, Any]:
        ids = [i for row in state.get("results") or [] if row.get("status") in ("new", "changed")
               for i in row.get("memory_ids") or []]
        if not ids or "user_id" not in state or "cube_id" not in state:
            return {}
        jobs = schedule_memories(services, user_id=state["user_id"], cube_id=state["cube_id"], memory_ids=ids)
        return {"summary": {**(state.get("summary") or {}), "enrich_jobs": len(jobs)}}

    return schedule_enrichment
