"""The chat and search graphs end to end with tree memory on a real Neo4j (`HIPPOGRAPH_TREE_BACKEND=neo4j`)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from graphs.chat import build_chat_graph
from graphs.search import build_search_graph
from graphs.services import Services
from graphs.state import ChatContext
from hippograph.settings import Settings
from nodes.respond import NO_MODEL_NOTE
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
