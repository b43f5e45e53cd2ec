"""The enrichment graph: what a worker runs for each `enrich_turn` job, after the answer was sent.

    START -> extract -> dedup -> supersede -> topics -> preferences -> working_memory -> entities -> END

`entities` grounds time expressions into index keys and links memories to the entity graph (spaCy, offline).

Checkpointed per job (thread_id = job id), so a worker that crashes mid-job resumes at the node that was
running; every node is idempotent (deterministic ids, content-hash checks), so re-running that node is safe.
The fast path's memory ids (`memory_ids`) are only ever linked to, never rewritten.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from itertools import pairwise
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from hippograph.nodes._timing import Node
from hippograph.nodes.enrich_common import ENRICH_KIND, EnrichState
from hippograph.nodes.enrich_dedup import make_enrich_dedup
from hippograph.nodes.enrich_entities import make_enrich_entities
from hippograph.nodes.enrich_extract import make_enrich_extract
from hippograph.nodes.enrich_preferences import make_enrich_preferences
from hippograph.nodes.enrich_supersede import make_enrich_supersede
from hippograph.nodes.enrich_topics import make_enrich_topics
from hippograph.nodes.enrich_working import make_enrich_working
from hippograph.stores.files import private_file
from hippograph.stores.services import Services
from hippograph.stores.settings import Settings

__all__ = ["ENRICH_KIND", "NODES", "EnrichState", "build_enrich_graph", "open_enrich_checkpointer"]

NODES = ["extract", "dedup", "supersede", "topics", "preferences", "working_memory", "entities"]


def open_enrich_checkpointer(settings: Settings) -> BaseCheckpointSaver:
    """The enrich graph's checkpoints: Postgres when configured, else their own SQLite file in the data dir."""
    if settings.checkpointer_url.startswith(("postgres://", "postgresql://")):
        from hippograph.graphs.checkpoint import open_checkpointer

        return open_checkpointer(settings)
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(private_file(settings.data_dir / "enrich_checkpoints.sqlite"), check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA secure_delete=ON")  # erased jobs leave no bytes in free pages
    return SqliteSaver(conn)


def _slowed(node: Node, seconds: float) -> Node:
    """The node, after a pause of `seconds` (`Settings.enrich_node_delay`, for crash tests; 0 = the node itself)."""
    if seconds <= 0:
        return node

    @functools.wraps(node)
    def slowed(state: EnrichState) -> dict[str, Any]:
        time.sleep(seconds)
        return node(state)

    return slowed


def build_enrich_graph(services: Services | None = None, *, checkpointer: BaseCheckpointSaver | None = None
                       ) -> CompiledStateGraph:
    services = services or Services.from_settings()
    delay = services.settings.enrich_node_delay
    builder = StateGraph(EnrichState)
    builder.add_node("extract", _slowed(make_enrich_extract(services), delay))
    builder.add_node("dedup", _slowed(make_enrich_dedup(services), delay))
    builder.add_node("supersede", _slowed(make_enrich_supersede(services), delay))
    builder.add_node("topics", _slowed(make_enrich_topics(services), delay))
    builder.add_node("preferences", _slowed(make_enrich_preferences(services), delay))
    builder.add_node("working_memory", _slowed(make_enrich_working(services), delay))
    builder.add_node("entities", _slowed(make_enrich_entities(services), delay))
    builder.add_edge(START, "extract")
    for a, b in pairwise(NODES):
        builder.add_edge(a, b)
    builder.add_edge(NODES[-1], END)
    return builder.compile(checkpointer=checkpointer, name="enrich")
