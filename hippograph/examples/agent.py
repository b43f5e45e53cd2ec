"""An example agent that embeds hippograph's chat graph as a subgraph.

Two ways to embed it:

1. As a node that shares the parent's `messages` key (`build_agent`): the parent's messages flow into the chat
   graph, its answer comes back as an AI message, and the parent's next node sees it. The parent passes its
   own `context_schema=ChatContext`, so `context=ChatContext(user_id=...)` reaches the subgraph.
2. Called from a node whose state has nothing in common with the chat graph (`build_ticket_agent`): the node
   builds the chat input itself and maps the result back into its own keys.

Both graphs can also use hippograph memory through LangGraph's store API (`HippoStore`).

    python -m hippograph.examples.agent "Where do I live?" --user ana
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from hippograph.graphs.chat import build_chat_graph
from hippograph.nodes.state import ChatContext
from hippograph.stores.models import SearchHit
from hippograph.stores.services import Services


class AgentState(TypedDict, total=False):
    """The parent agent's state: `messages` is shared with the chat subgraph, the rest is the agent's own."""

    messages: Annotated[list[AnyMessage], add_messages]
    memories: list[SearchHit]
    """Written by the chat subgraph (same key, same type): the memories its answer used."""
    turns: int
    summary: str


def count_turn(state: AgentState) -> dict[str, Any]:
    """The agent's own step after memory answered: sees the subgraph's AI message in the shared `messages`."""
    last = state["messages"][-1]
    cited = len(state.get("memories") or [])
    return {"turns": state.get("turns", 0) + 1,
            "summary": f"turn {state.get('turns', 0) + 1}: {last.type} answered using {cited} memories"}


def build_agent(services: Services, *, checkpointer: BaseCheckpointSaver | None = None
                ) -> CompiledStateGraph[Any, Any, Any, Any]:
    """START -> memory (the chat graph, as a subgraph) -> count_turn -> END."""
    memory = build_chat_graph(services, checkpointer=None, name="memory")
    builder = StateGraph(AgentState, context_schema=ChatContext)
    builder.add_node("memory", memory)
    builder.add_node("count_turn", count_turn)
    builder.add_edge(START, "memory")
    builder.add_edge("memory", "count_turn")
    builder.add_edge("count_turn", END)
    return builder.compile(checkpointer=checkpointer, name="agent")


class TicketState(TypedDict, total=False):
    """A support-ticket flow with its own schema: no `messages` at all."""

    customer: str
    question: str
    reply: str
    memory_ids: list[str]


def build_ticket_agent(services: Services) -> CompiledStateGraph[Any, Any, Any, Any]:
    """START -> answer (calls the chat graph with its own input and context) -> END."""
    chat = build_chat_graph(services, checkpointer=None, name="memory")

    def answer(state: TicketState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        base = runtime.context or ChatContext()
        context = ChatContext(user_id=state.get("customer") or base.user_id, top_k=base.top_k, ingest=base.ingest)
        out = chat.invoke({"messages": [HumanMessage(content=state["question"])]}, context=context)
        return {"reply": out.get("answer", ""), "memory_ids": [h.id for h in out.get("memories", [])]}

    builder = StateGraph(TicketState, context_schema=ChatContext)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile(name="tickets")


def main() -> None:
    import argparse

    from langgraph.checkpoint.memory import InMemorySaver

    parser = argparse.ArgumentParser(description="hippograph example agent")
    parser.add_argument("message")
    parser.add_argument("--user", default="default")
    args = parser.parse_args()
    services = Services.from_settings()
    agent = build_agent(services, checkpointer=InMemorySaver())
    out = agent.invoke({"messages": [HumanMessage(content=args.message)]},
                       {"configurable": {"thread_id": f"{args.user}/example"}}, context=ChatContext(user_id=args.user))
    answer = next(m for m in reversed(out["messages"]) if isinstance(m, AIMessage))
    print(answer.content)
    print(out["summary"])


if __name__ == "__main__":
    main()
