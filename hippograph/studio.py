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
import warnings
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from hippograph.stores.services import Services

GRAPHS = ("chat", "search", "ingest", "enrich")
_lock = threading.Lock()

# The dev server asks for a durability on every run, also on stateless runs (`thread_id` None) to which it gives
# no checkpointer; LangGraph then warns that durability has no effect. That is the server's choice, not a
# mistake in the graph or the request, so it stays out of the log.
warnings.filterwarnings("ignore", message="`durability` has no effect when no checkpointer is present")


_services: list[Services] = []
_services_lock = threading.Lock()


def services() -> Services:
    """One `Services` per process, also when the warm-up and a first run ask at the same moment (two would
    open the same Milvus Lite file twice)."""
    from hippograph.settings import get_settings
    from hippograph.stores.services import Services

    with _services_lock:
        if not _services:
            _services.append(Services.from_settings(get_settings()))
        return _services[0]


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


def warm_up() -> None:
    """Open the stores, load the embedder and compile every graph, so the first run in Studio does not wait
    for them (the dev server logs "Slow graph load" when a factory takes seconds). A failure here is raised
    again, with its reason, by the factory the first run calls."""
    try:
        shared = services()
        shared.embeddings.embed_query("warm up")
        shared.open_preferences()  # compiling no longer opens it (it opens on first use): Milvus Lite takes seconds
        for name in GRAPHS:
            _graph(name)
    except Exception:  # reported, with its reason, by the factory on first use
        return


# Started on import: `langgraph dev` imports this module at start-up (cheaply: nothing heavy at module level)
# and calls the factories on the first run, by which time the warm-up has usually finished.
threading.Thread(target=warm_up, name="hippograph-studio-warm-up", daemon=True).start()


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
