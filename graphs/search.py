"""The search graph: the chat graph's recall half, for agents that want memories rather than an answer.

    START -> scope -> (retrieve_tree || retrieve_prefs) -> rerank -> threshold -> END
"""

from __future__ import annotations

from langgraph.graph import END, StateGraph

from hippograph.graphs.chat import ChatGraph, ChatGraphBuilder, Checkpointer, add_recall_nodes, resolve_checkpointer
from hippograph.nodes.state import ChatContext, ChatInput, ChatState, SearchOutput
from hippograph.stores.services import Services


def build_search_graph(
    services: Services | None = None, *, checkpointer: Checkpointer = None, name: str = "search",
    preferences: bool = True,
) -> ChatGraph:
    """The search graph. `preferences=False` leaves out retrieve_prefs (the output then has no `preferences`;
    the memories are the same): `Memory.search` returns memories only and need not start preference memory."""
    services = services or Services.from_settings()
    builder: ChatGraphBuilder = StateGraph(ChatState, context_schema=ChatContext, input_schema=ChatInput,
                                           output_schema=SearchOutput)
    add_recall_nodes(builder, services, preferences=preferences)
    builder.add_edge("threshold", END)

    return builder.compile(checkpointer=resolve_checkpointer(services, checkpointer), name=name)
