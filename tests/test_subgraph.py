"""Embedding: the chat graph as a subgraph (shared `messages`), from a node with another schema; HippoStore."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from typing_extensions import TypedDict

from hippograph.examples.agent import AgentState, build_agent, build_ticket_agent
from hippograph.graphs.search import build_search_graph
from hippograph.memory import Memory
from hippograph.nodes.state import ChatContext
from hippograph.store import HippoStore
from hippograph.stores.services import Services


@pytest.fixture
def services(settings) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    services = Services.from_settings(settings)
    memory = Memory(services=services)
    memory.add("Ana's dog is named Rex and loves the beach", user_id="ana")
    memory.add("Bo's dog is named Pixel", user_id="bo")
    yield services
    services.close()


def test_chat_graph_as_subgraph_shares_messages(services: Services) -> None:
    agent = build_agent(services, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "ana/agent"}}
    out = agent.invoke({"messages": [HumanMessage(content="What is my dog named?")]}, config,
                       context=ChatContext(user_id="ana"))
    assert [m.type for m in out["messages"]] == ["human", "ai"]
    assert "Rex" in out["messages"][-1].content and "Pixel" not in out["messages"][-1].content
    assert out["turns"] == 1 and "ai answered using" in out["summary"]
    assert any("Rex" in h.text for h in out["memories"])

    # a second turn on the parent's thread: the shared messages accumulate in the parent's checkpoint
    out = agent.invoke({"messages": [HumanMessage(content="Where does my dog like to go?")]}, config,
                       context=ChatContext(user_id="ana"))
    assert [m.type for m in out["messages"]] == ["human", "ai", "human", "ai"]
    assert out["turns"] == 2 and "beach" in out["messages"][-1].content

    # the subgraph's nodes are visible as nested steps (what Studio shows)
    nodes = {ns[0].split(":")[0] for ns, _ in agent.stream(
        {"messages": [HumanMessage(content="dog?")]}, {"configurable": {"thread_id": "ana/agent2"}},
        context=ChatContext(user_id="ana"), stream_mode="updates", subgraphs=True) if ns}
    assert nodes == {"memory"}


def test_chat_graph_from_a_node_with_another_schema(services: Services) -> None:
    tickets = build_ticket_agent(services)
    out = tickets.invoke({"customer": "bo", "question": "What is my dog named?"}, context=ChatContext(user_id="x"))
    assert set(out) == {"customer", "question", "reply", "memory_ids"}
    assert "Pixel" in out["reply"] and "Rex" not in out["reply"] and out["memory_ids"]


def test_search_graph_as_subgraph(services: Services) -> None:
    builder = StateGraph(AgentState, context_schema=ChatContext)
    builder.add_node("recall", build_search_graph(services))
    builder.add_edge(START, "recall")
    builder.add_edge("recall", END)
    out = builder.compile().invoke({"messages": [HumanMessage(content="dog named")]},
                                   context=ChatContext(user_id="bo", ingest=False))
    assert [h.text for h in out["memories"]] == ["Bo's dog is named Pixel"]
    assert not any(isinstance(m, AIMessage) for m in out["messages"])


def test_hippostore_put_get_search_delete_namespaces(services: Services) -> None:
    store = HippoStore(services)
    store.put(("ana", "prefs"), "drink", {"content": "Ana drinks oat milk flat whites", "kind": "food"})
    store.put(("ana", "prefs"), "music", {"content": "Ana listens to fado on Sundays", "kind": "music"})
    store.put(("ana", "notes", "work"), "desk", {"text": "Ana's desk is on floor 3"})
    store.put(("bo", "prefs"), "drink", {"content": "Bo drinks black tea"})

    item = store.get(("ana", "prefs"), "drink")
    assert item is not None and item.value["kind"] == "food" and item.namespace == ("ana", "prefs")
    assert store.get(("ana", "prefs"), "nope") is None

    hits = store.search(("ana",), query="oat milk flat white", limit=2)
    assert hits[0].key == "drink" and hits[0].score is not None and hits[0].namespace == ("ana", "prefs")
    assert all(h.namespace[0] == "ana" for h in store.search(("ana",), query="drinks tea", limit=10))
    assert [h.key for h in store.search(("ana", "prefs"), filter={"kind": "music"})] == ["music"]
    assert {h.key for h in store.search(("ana", "notes"))} == {"desk"}
    assert [h.key for h in store.search(("ana",), filter={"kind": {"$in": ["food"]}})] == ["drink"]

    # put on an existing key updates the same memory in place
    before = services.tree.count(cube_ids=["ana.default"])
    store.put(("ana", "prefs"), "drink", {"content": "Ana now drinks espresso", "kind": "food"})
    assert store.get(("ana", "prefs"), "drink").value["content"] == "Ana now drinks espresso"  # type: ignore[union-attr]
    assert services.tree.count(cube_ids=["ana.default"]) == before

    assert store.list_namespaces(prefix=("ana",)) == [("ana", "notes", "work"), ("ana", "prefs")]
    assert store.list_namespaces(prefix=("ana",), max_depth=2) == [("ana", "notes"), ("ana", "prefs")]
    assert store.list_namespaces(suffix=("prefs",)) == [("ana", "prefs"), ("bo", "prefs")]

    store.delete(("ana", "prefs"), "music")
    assert store.get(("ana", "prefs"), "music") is None

    # store items are memories: the chat graph recalls them for their user only
    hits = Memory(services=services).search("espresso", user_id="ana")
    assert any("espresso" in h.text for h in hits)
    assert not any("espresso" in h.text for h in Memory(services=services).search("espresso", user_id="bo"))

    async def run_async() -> None:
        await store.aput(("ana", "async"), "k", {"content": "async works"})
        got = await store.aget(("ana", "async"), "k")
        assert got is not None and got.value["content"] == "async works"
        results = await store.abatch([])
        assert results == []

    asyncio.run(run_async())


def test_bound_hippostore_stays_in_its_cube(services: Services) -> None:
    services.registry.create_cube("bo", "bo.notes")
    bo = HippoStore(services, user_id="bo", cube_id="bo.notes")
    bo.put(("memories",), "k1", {"content": "Bo keeps his notes here"})
    # a namespace naming another user changes nothing for a bound store: still Bo's cube
    bo.put(("ana", "prefs"), "drink", {"content": "spoofed"})
    assert HippoStore(services).get(("ana", "prefs"), "drink") is None
    assert {h.key for h in bo.search(())} == {"k1", "drink"}
    assert all(m.cube_id == "bo.notes" for m in services.tree.list(cube_ids=["bo.notes"]))
    with pytest.raises(PermissionError):
        HippoStore(services, user_id="bo", cube_id="ana.default")


class NoteState(TypedDict, total=False):
    note: str
    recalled: list[str]


def test_any_agent_uses_hippostore_through_runtime_store(services: Services) -> None:
    def remember(state: NoteState, runtime: Runtime[Any]) -> dict[str, Any]:
        store: BaseStore = runtime.store  # type: ignore[assignment]
        store.put(("ana", "agent"), "note-1", {"content": state["note"]})
        return {"recalled": [i.value["content"] for i in store.search(("ana", "agent"), query="umbrella")]}

    builder = StateGraph(NoteState)
    builder.add_node("remember", remember)
    builder.add_edge(START, "remember")
    graph = builder.compile(store=HippoStore(services))
    out = graph.invoke({"note": "Ana forgot her umbrella at the office"})
    assert out["recalled"] == ["Ana forgot her umbrella at the office"]
