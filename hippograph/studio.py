"""Graph factories for `langgraph dev` / LangGraph Studio (see `langgraph.json`).

Each factory builds the stores from settings (`HIPPOGRAPH_*`, `.env`) once per process and compiles its graph
WITHOUT a checkpointer: the LangGraph server injects its own. Runs take the per-run context as JSON, e.g.
`{"assistant_id": "chat", "input": {"messages": [...]}, "context": {"user_id": "ana"}}`.

The factories are coroutines that build in a worker thread: opening stores is blocking I/O, which the dev
server refuses on its event loop. Studio is a development tool: the user id comes from the run context,
unauthenticated. Use `hippograph serve` (API keys) to expose memory to other people.
"""

from __future__ import annotations

import asyncio
import threading
from functools import cache, lru_cache
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from hippograph.settings import get_settings
from hippograph.stores.services import Services

_lock = threading.Lock()


@lru_cache(maxsize=1)
def services() -> Services:
    return Services.from_settings(get_settings())


@cache
def _graph(name: str) -> CompiledStateGraph[Any, Any, Any, Any]:
    with _lock:
        shared = services()
        if name == "chat":
            from hippograph.graphs.chat import build_chat_graph

            return build_chat_graph(shared, checkpointer=None)
        if name == "search":
            from hippograph.graphs.search import build_search_graph

            return build_search_graph(shared, checkpointer=None)
        if name == "ingest":
            from hippograph.graphs.ingest import build_ingest_graph

            return build_ingest_graph(shared, checkpointer=None)
        if name == "enrich":
            from hippograph.graphs.enrich import build_enrich_graph

            return build_enrich_graph(shared, checkpointer=None)
        raise ValueError(f"unknown graph {name!r}")


async def chat() -> CompiledStateGraph[Any, Any, Any, Any]:
    """START -> scope -> retrieve_tree || retrieve_prefs -> rerank -> threshold -> respond -> (ingest, enrich)."""
    return await asyncio.to_thread(_graph, "chat")


async def search() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The recall half of chat: memories for a query, no answer."""
    return await asyncio.to_thread(_graph, "search")


async def ingest() -> CompiledStateGraph[Any, Any, Any, Any]:
    """Documents and conversations into tree memory (one Send per document)."""
    return await asyncio.to_thread(_graph, "ingest")


async def enrich() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The background enrichment of a turn: extract, dedup, supersede, topics, preferences, working memory."""
    return await asyncio.to_thread(_graph, "enrich")
