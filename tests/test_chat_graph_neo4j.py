"""The chat and search graphs end to end with tree memory on a real Neo4j (`HIPPOGRAPH_TREE_BACKEND=neo4j`)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from graphs.chat import build_chat_graph
from graphs.search import build_search_graph
from hippograph.settings import Settings
from nodes.respond import NO_MODEL_NOTE
from nodes.state import ChatContext
from stores.services import Services
from stores.tree.neo4j import Neo4jTreeStore
from tests.neo4j_fixture import wipe_database

pytestmark = pytest.mark.neo4j


@pytest.fixture(scope="module")
def services(neo4j_server: Any, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    wipe_database(neo4j_server.uri, neo4j_server.auth)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("chat-neo4j"),
        embedder="hashing:64",
        worker_in_process=False,
        tree_backend="neo4j",
        neo4j_uri=neo4j_server.uri,
        neo4j_user=neo4j_server.auth[0],
        neo4j_password=neo4j_server.auth[1],
    )
    svc = Services.from_settings(settings)
    yield svc
    svc.close()


def test_services_use_neo4j(services: Services) -> None:
    assert isinstance(services.tree, Neo4jTreeStore)


def test_memory_from_turn_one_is_retrieved_and_cited_in_turn_two(services: Services) -> None:
    chat = build_chat_graph(services)
    config = {"configurable": {"thread_id": "t-neo4j"}}
    ctx = ChatContext(user_id="ana")
    first = chat.invoke({"messages": [HumanMessage("My cat Miso loves salmon treats")]}, config, context=ctx)
    assert first["written_ids"]
    stored = services.tree.get(first["written_ids"])
    assert stored and stored[0].text == "My cat Miso loves salmon treats"
    second = chat.invoke({"messages": [HumanMessage("what treats does Miso love?")]}, config, context=ctx)
    assert second["memories"][0].id == first["written_ids"][0]
    assert NO_MODEL_NOTE in second["answer"] and "[1] My cat Miso loves salmon treats" in second["answer"]
    assert second["references"][0]["id"] == first["written_ids"][0]


def test_search_graph_finds_what_chat_wrote_and_keeps_users_apart(services: Services) -> None:
    chat = build_chat_graph(services, checkpointer=None)
    chat.invoke(
        {"messages": [HumanMessage("The spare key is under the blue flowerpot")]}, context=ChatContext(user_id="ben")
    )
    found = build_search_graph(services).invoke({"query": "where is the spare key"}, context=ChatContext(user_id="ben"))
    assert found["memories"][0].text == "The spare key is under the blue flowerpot"
    other = build_search_graph(services).invoke(
        {"query": "where is the spare key"}, context=ChatContext(user_id="cleo")
    )
    assert all("flowerpot" not in m.text for m in other["memories"])


def test_document_ingest_on_neo4j_is_idempotent_supersedes_and_archives(services: Services, tmp_path: Any) -> None:
    from hippograph.memory import Memory
    from stores.models import MemoryStatus
    from stores.tree.base import Rel
    from stores.tree.ops import ancestors

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
    # PARENT edges up the tree (chunk -> sections -> document) live in Neo4j
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
