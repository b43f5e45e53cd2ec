"""The chat graph: one checkpointed run per turn.

    START -> scope -> retrieve_tree  --\
                 \\-> retrieve_prefs ---> rerank -> threshold -> respond -> END
                                                      threshold -> ingest (deferred: after respond)
                                                                -> schedule_enrichment (deferred) -> END
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Durability

from hippograph.graphs.checkpoint import open_checkpointer
from hippograph.nodes.ingest import make_ingest
from hippograph.nodes.rerank import make_rerank
from hippograph.nodes.respond import make_respond
from hippograph.nodes.retrieve_prefs import make_retrieve_prefs
from hippograph.nodes.retrieve_tree import make_retrieve_tree
from hippograph.nodes.schedule_enrichment import make_schedule_enrichment
from hippograph.nodes.scope import make_scope
from hippograph.nodes.state import ChatContext, ChatInput, ChatOutput, ChatState
from hippograph.nodes.threshold import make_threshold
from hippograph.stores.services import Services

Checkpointer = BaseCheckpointSaver | Literal["default"] | None
ChatGraphBuilder = StateGraph[ChatState, ChatContext, ChatInput, Any]
ChatGraph = CompiledStateGraph[ChatState, ChatContext, ChatInput, Any]

TURN_DURABILITY: Durability = "exit"
"""How a chat turn checkpoints: once, when the run ends, not after every step. A turn is tens of milliseconds and
nothing resumes one half-way, while the per-step writes (each re-serialising the thread's messages) cost about a
third of a turn's CPU. The enrichment graph, whose jobs do resume, keeps per-step checkpoints."""


def add_recall_nodes(builder: ChatGraphBuilder, services: Services, *, preferences: bool = True) -> None:
    """scope -> (retrieve_tree || retrieve_prefs) -> rerank -> threshold: shared by chat and search.
    `preferences=False` leaves retrieve_prefs out (scope -> retrieve_tree -> rerank), for callers that return
    memories only: rerank ranks memories alone, so their result is the same without opening preference memory."""
    builder.add_node("scope", make_scope(services))
    builder.add_node("retrieve_tree", make_retrieve_tree(services))
    if preferences:
        builder.add_node("retrieve_prefs", make_retrieve_prefs(services))
    builder.add_node("rerank", make_rerank(services))
    builder.add_node("threshold", make_threshold(services))
    builder.add_edge(START, "scope")
    builder.add_edge("scope", "retrieve_tree")
    if preferences:
        builder.add_edge("scope", "retrieve_prefs")
        builder.add_edge(["retrieve_tree", "retrieve_prefs"], "rerank")
    else:
        builder.add_edge("retrieve_tree", "rerank")
    builder.add_edge("rerank", "threshold")


def resolve_checkpointer(services: Services, checkpointer: Checkpointer) -> BaseCheckpointSaver | None:
    return open_checkpointer(services.settings) if checkpointer == "default" else checkpointer


def build_chat_graph(
    services: Services | None = None, *, checkpointer: Checkpointer = "default", name: str = "chat"
) -> ChatGraph:
    """Compile the chat graph. `checkpointer=None` for servers that inject their own, or for subgraphs."""
    services = services or Services.from_settings()
    builder: ChatGraphBuilder = StateGraph(ChatState, context_schema=ChatContext, input_schema=ChatInput,
                                           output_schema=ChatOutput)
    add_recall_nodes(builder, services)
    builder.add_node("respond", make_respond(services))
    builder.add_node("ingest", make_ingest(services), defer=True)
    builder.add_node("schedule_enrichment", make_schedule_enrichment(services), defer=True)
    builder.add_edge("threshold", "respond")
    builder.add_edge("respond", END)
    # Deferred: ingest waits until the answer is out (it would otherwise run beside respond, in its superstep).
    builder.add_edge("threshold", "ingest")
    builder.add_edge("ingest", "schedule_enrichment")
    builder.add_edge("schedule_enrichment", END)
    return builder.compile(checkpointer=resolve_checkpointer(services, checkpointer), name=name)
