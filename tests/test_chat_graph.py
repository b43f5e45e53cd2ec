"""The chat and search graphs end to end on both tree backends (real SQLite store or a real Neo4j the tests
start; real Milvus Lite for preferences). Tests taking `services` run once per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from hippograph.graphs.chat import build_chat_graph
from hippograph.graphs.search import build_search_graph
from hippograph.memory import Memory
from hippograph.nodes.respond import NO_MODEL_NOTE, references_for, system_prompt
from hippograph.nodes.state import ChatContext
from hippograph.nodes.threshold import apply_threshold
from hippograph.nodes.turns import turn_id
from hippograph.settings import Settings
from hippograph.stores.errors import AccessDeniedError, InvalidInputError
from hippograph.stores.models import MemoryItem, MemoryStatus, SearchHit
from hippograph.stores.preferences.base import Preference, PreferenceHit
from hippograph.stores.services import Services
from hippograph.stores.tree.base import Rel
from hippograph.stores.tree.ops import ancestors
from tests.conftest import DIM
from tests.fakes import ScriptedChatModel

NODES = ["scope", "retrieve_tree", "retrieve_prefs", "rerank", "threshold", "respond", "ingest", "schedule_enrichment"]


@pytest.fixture(scope="module", params=["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def services(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The default services with tree memory on one backend (Neo4j: the session's server, wiped first)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("chat"), embedder=f"hashing:{DIM}", worker_in_process=False)
    tree = None
    if request.param == "neo4j":
        from tests.neo4j_fixture import make_neo4j_tree_store

        tree = make_neo4j_tree_store(request.getfixturevalue("neo4j_server"), DIM)
    svc = Services.from_settings(settings, tree=tree)
    yield svc
    svc.close()


def hit(score: float, text: str = "x") -> SearchHit:
    return SearchHit(item=MemoryItem(user_id="u", cube_id="c", text=text), score=score)


def test_graph_exposes_the_explicit_nodes(services: Services) -> None:
    chat = build_chat_graph(services, checkpointer=None)
    assert [n for n in chat.get_graph().nodes if not n.startswith("__")] == NODES
    edges = {(e.source, e.target) for e in chat.get_graph().edges}
    assert {("scope", "retrieve_tree"), ("scope", "retrieve_prefs"), ("retrieve_tree", "rerank"),
            ("retrieve_prefs", "rerank"), ("respond", "ingest"), ("ingest", "schedule_enrichment")} <= edges
    search = build_search_graph(services)
    assert [n for n in search.get_graph().nodes if not n.startswith("__")] == NODES[:5]


def test_memory_from_turn_one_is_retrieved_and_cited_in_turn_two(services: Services) -> None:
    chat = build_chat_graph(services)
    config: RunnableConfig = {"configurable": {"thread_id": "t-recall"}}
    ctx = ChatContext(user_id="ana")
    first = chat.invoke({"messages": [HumanMessage("My cat Miso loves salmon treats")]}, config, context=ctx)
    assert first["written_ids"] and first["job_id"]
    stored = services.tree.get(first["written_ids"])
    assert stored and stored[0].text == "My cat Miso loves salmon treats"
    second = chat.invoke({"messages": [HumanMessage("what treats does Miso love?")]}, config, context=ctx)
    assert second["memories"][0].id == first["written_ids"][0]
    assert NO_MODEL_NOTE in second["answer"] and "[1] My cat Miso loves salmon treats" in second["answer"]
    assert second["references"][0]["id"] == first["written_ids"][0]
    assert set(second["timings"]) == set(NODES)
    # the thread's checkpoint holds both turns and both answers
    assert [m.type for m in second["messages"]] == ["human", "ai", "human", "ai"]


def test_deferred_ingest_runs_after_respond_and_is_searchable_when_run_ends(services: Services) -> None:
    chat = build_chat_graph(services, checkpointer=None)
    # ingest hangs off threshold like respond does: only `defer=True` holds it back until the answer is out.
    step = {event["payload"]["name"]: event["step"] for event in chat.stream(
        {"messages": [HumanMessage("The spare key is under the blue flowerpot")]},
        context=ChatContext(user_id="ben"), stream_mode="debug") if event["type"] == "task_result"}
    assert step["threshold"] < step["respond"] < step["ingest"] < step["schedule_enrichment"]
    found = build_search_graph(services).invoke({"query": "where is the spare key"},
                                                context=ChatContext(user_id="ben"))
    assert found["memories"][0].text == "The spare key is under the blue flowerpot"
    other = build_search_graph(services).invoke({"query": "where is the spare key"},
                                                context=ChatContext(user_id="cleo"))
    assert all("flowerpot" not in m.text for m in other["memories"])


def test_ingest_ids_are_stable_on_replay(services: Services) -> None:
    chat = build_chat_graph(services, checkpointer=None)
    message = HumanMessage("I run every Tuesday morning", id="msg-fixed-1")
    ctx = ChatContext(user_id="cy", session_id="sess-1")
    a = chat.invoke({"messages": [message]}, context=ctx)
    b = chat.invoke({"messages": [message]}, context=ctx)
    assert a["written_ids"] == b["written_ids"] == [turn_id("cy.default", "sess-1", "msg-fixed-1")]
    assert services.tree.count(cube_ids=["cy.default"]) == 1
    assert a["job_id"] == b["job_id"]  # the outbox dedups the enrichment job too


def test_checkpoint_resume_of_a_thread_in_a_new_process_like_instance(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedder="hashing:64", worker_in_process=False)
    with Memory(settings) as memory:
        memory.chat("I am planning a trip to Kyoto in April", user_id="dee", thread_id="trip")
    with Memory(settings) as memory:  # new services, new graph, same checkpoint file
        result = memory.chat("any tips?", user_id="dee", thread_id="trip")
        state = memory._chat.get_state({"configurable": {"thread_id": result.thread_id}})
    humans = [m.content for m in state.values["messages"] if m.type == "human"]
    assert humans == ["I am planning a trip to Kyoto in April", "any tips?"]


def test_threads_are_private_per_user(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedder="hashing:64", worker_in_process=False)
    with Memory(settings) as memory:
        memory.chat("my bank PIN hint is blue dolphin", user_id="eve", thread_id="shared-name")
        other = memory.chat("hello", user_id="mal", thread_id="shared-name")
        state = memory._chat.get_state({"configurable": {"thread_id": other.thread_id}})
    assert [m.content for m in state.values["messages"] if m.type == "human"] == ["hello"]
    assert all("dolphin" not in m["text"] for m in other.references)


def test_threshold_drops_under_floor_but_keeps_minimum() -> None:
    hits = [hit(1.0, "a"), hit(0.9, "b"), hit(0.3, "c"), hit(0.2, "d"), hit(0.1, "e")]
    kept, dropped = apply_threshold(hits, top_k=10, floor=0.5, min_keep=1)
    assert [h.text for h in kept] == ["a", "b"]
    assert [d["reason"].split()[0] for d in dropped] == ["relative"] * 3
    kept, _ = apply_threshold(hits, top_k=10, floor=0.95, min_keep=3)
    assert [h.text for h in kept] == ["a", "b", "c"]
    kept, dropped = apply_threshold(hits, top_k=2, floor=0.0, min_keep=3)
    assert [h.text for h in kept] == ["a", "b"] and dropped[0]["reason"] == "beyond top_k=2"
    assert apply_threshold([], top_k=3, floor=0.5, min_keep=1) == ([], [])


def test_threshold_in_graph_records_drops(services: Services) -> None:
    memory_ids = Memory(services=services).add(
        ["The piano is in the living room", "Weather is mild", "Pasta for dinner", "Tax forms due in April"],
        user_id="fay")
    assert len(memory_ids) == 4
    out = build_search_graph(services).invoke(
        {"query": "where is the piano"}, context=ChatContext(user_id="fay", threshold=0.99, min_keep=1))
    assert [h.text for h in out["memories"]] == ["The piano is in the living room"]
    assert len(out["dropped"]) >= 1 and all("floor" in d["reason"] for d in out["dropped"])


def test_respond_with_a_model_gets_memories_and_preference_constraints(tmp_path: Path) -> None:
    def check(messages) -> None:  # type: ignore[no-untyped-def]
        system = messages[0]
        assert isinstance(system, SystemMessage)
        assert "[1]" in system.content and "Lisbon" in system.content
        assert "constraints" in system.content and "vegetarian" in system.content
        assert messages[-1].content == "Where do I live?"

    model = ScriptedChatModel(replies=["You live in Lisbon [1]."], check=check)
    settings = Settings(data_dir=tmp_path, embedder="hashing:64", worker_in_process=False)
    svc = Services.from_settings(settings, chat_model=model)
    try:
        memory = Memory(services=svc)
        (mid,) = memory.add("I live in Lisbon since 2021", user_id="gus")
        svc.preferences.add([Preference(user_id="gus", cube_id="gus.default", text="I am vegetarian")])
        result = memory.chat("Where do I live?", user_id="gus")
    finally:
        svc.close()
    assert result.answer == "You live in Lisbon [1]."
    assert [r["id"] for r in result.references] == [mid]
    assert len(model.prompts) == 1


def test_system_prompt_leaves_out_superseded_preferences() -> None:
    current = Preference(user_id="u", cube_id="c", text="I prefer window seats")
    old = Preference(user_id="u", cube_id="c", text="I prefer aisle seats", status=MemoryStatus.SUPERSEDED)
    prompt = system_prompt([], [PreferenceHit(preference=current, score=1), PreferenceHit(preference=old, score=1)])
    assert "window seats" in prompt and "aisle seats" not in prompt


def test_references_map_citations_to_memories() -> None:
    memories = [hit(1.0, "one"), hit(0.5, "two")]
    refs = references_for("see [2] and [2], not [9]", memories)
    assert [(r["n"], r["text"]) for r in refs] == [(2, "two")]


def test_scope_rejects_foreign_cubes_and_bad_input(services: Services) -> None:
    graph = build_search_graph(services)
    services.registry.ensure_user("hal")
    with pytest.raises(AccessDeniedError):
        graph.invoke({"query": "x"}, context=ChatContext(user_id="ivy", cube_ids=["hal.default"]))
    with pytest.raises(InvalidInputError):
        graph.invoke({"query": "   "}, context=ChatContext(user_id="ivy"))
    with pytest.raises(InvalidInputError):
        graph.invoke({"query": "x"}, context=ChatContext(user_id='u1" or 1=1 //'))


def test_document_ingest_is_idempotent_supersedes_and_archives(services: Services, tmp_path: Path) -> None:
    doc = tmp_path / "runbook.md"
    doc.write_text("# Runbook\n\n## Backups\n\nBackups run nightly at 02:00 to the cold bucket.\n\n"
                   "## Paging\n\nThe on-call phone rotates every Monday at noon.\n", encoding="utf-8")
    memory = Memory(services=services)
    first = memory.ingest([doc], user_id="dora")
    cube = "dora.default"
    count = services.tree.count(cube_ids=[cube])
    assert first["summary"]["errors"] == 0 and first["summary"]["added"] == count >= 3  # doc, sections, chunks
    hits = memory.search("when do backups run", user_id="dora", top_k=3)
    assert "nightly at 02:00" in hits[0].text
    assert hits[0].item.source_refs[0].extra["heading_path"] == ["Runbook", "Backups"]
    # PARENT edges up the tree (chunk -> sections -> document) live in the backend (Neo4j: relationships)
    assert [m.id for m in ancestors(services.tree, hits[0].id)][-1] == first["results"][0]["doc_id"]
    assert [m.text.splitlines()[0].split(" › ")[-1] for m in ancestors(services.tree, hits[0].id)][:2] == [
        "Backups", "Runbook"]
    assert memory.ingest([doc], user_id="dora")["summary"]["added"] == 0
    assert services.tree.count(cube_ids=[cube]) == count
    doc.write_text(doc.read_text().replace("Monday at noon", "Tuesday at 09:00"), encoding="utf-8")
    edited = memory.ingest([doc], user_id="dora")["results"][0]
    assert (edited["added"], edited["superseded"]) == (1, 1)
    (new_hit,) = memory.search("on-call phone rotation", user_id="dora", top_k=1)
    assert "Tuesday at 09:00" in new_hit.text
    old = services.tree.edges([new_hit.id], rel=Rel.SUPERSEDES)[0].dst
    assert services.tree.get([old])[0].status == MemoryStatus.SUPERSEDED
    assert memory.delete_document(str(doc), user_id="dora") == count
    assert services.tree.count(cube_ids=[cube]) == 0
