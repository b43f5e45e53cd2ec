"""Shared pieces of the enrichment graph's nodes: the state, ids, fault injection for crash tests."""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any

from typing_extensions import TypedDict

from hippograph.nodes.state import merge_dicts
from hippograph.stores.models import content_hash
from hippograph.stores.write import stable_id

ENRICH_KIND = "enrich_turn"
#: Working memory: how many memories per user session `retrieve_tree` reads first.
WORKING_MEMORY_SIZE = 12
#: A fact joins an existing topic at this cosine to the topic's centroid.
TOPIC_ATTACH_COSINE = 0.55
#: Facts at least this close to each other form a cluster...
TOPIC_CLUSTER_COSINE = 0.5
#: ...and a cluster of at least this many facts without a topic gets a new TopicMemory.
TOPIC_MIN_CLUSTER = 3




class EnrichState(TypedDict, total=False):
    """One enrichment job's state. The input is the job payload (plus `job_id`)."""

    job_id: str
    user_id: str
    cube_id: str
    session_id: str
    thread_id: str
    mode: str
    memory_ids: list[str]
    """The raw turn memories the chat graph's fast path wrote: never changed, only linked to."""
    messages: list[dict[str, Any]]
    facts: list[dict[str, Any]]
    """Extracted facts: `{"id", "text", "message_ids"}` with deterministic ids."""
    pref_candidates: list[dict[str, Any]] | None
    """Preferences the LLM extractor found (None: the preference node uses the rule extractor)."""
    written: list[str]
    """Fact ids that are new in tree memory (added or superseding)."""
    merged: list[str]
    """Existing memory ids that a duplicate fact was merged into."""
    updates: list[dict[str, Any]]
    """Pending supersessions: `{"old": id, "new": fact id}`."""
    superseded: list[str]
    topics: list[str]
    preferences: list[str]
    preferences_superseded: list[str]
    working: list[str]
    decisions: list[dict[str, Any]]
    trace: Annotated[list[str], operator.add]
    """Names of the nodes that ran (a resumed job shows each node once)."""
    timings: Annotated[dict[str, float], merge_dicts]


def fact_id(cube_id: str, text: str) -> str:
    """A derived fact's id: deterministic, so a retried or resumed job writes the same memory."""
    return stable_id(cube_id, "fact", content_hash(text))


def node_update(name: str, start: float, update: dict[str, Any]) -> dict[str, Any]:
    update["trace"] = [name]
    update["timings"] = {name: (time.perf_counter() - start) * 1000.0}
    return update
