"""Pytest plugin: a real Neo4j 5.26 server for the whole test session.

Enable it with `pytest_plugins = ["tests.neo4j_fixture"]` in `tests/conftest.py` (or `-p tests.neo4j_fixture`).

- `neo4j_server` (session scope) starts `LocalNeo4j` once (jars fetched by Maven on first use) and stops it by
  PID at the end. With `HIPPOGRAPH_TEST_NEO4J_URI` set, the tests use that server instead (its credentials from
  `HIPPOGRAPH_TEST_NEO4J_USER` / `HIPPOGRAPH_TEST_NEO4J_PASSWORD`); its database is wiped by the tests!
- `make_neo4j_tree_store(server, dimension)` wipes the database and opens a `Neo4jTreeStore` on it.

Nothing here skips: without Java or Maven the fixture fails with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import neo4j
import pytest

from hippograph.stores.tree.neo4j import Neo4jTreeStore
from hippograph.stores.tree.neo4j_server import LocalNeo4j


@dataclass
class ExternalNeo4j:
    """A server someone else runs (CI service, Docker): same shape as `LocalNeo4j` for the tests."""

    uri: str
    auth: tuple[str, str]
    pid: int | None = None


def wipe_database(uri: str, auth: Any, database: str = "neo4j") -> None:
    """Delete every node (in batches) so each test starts from an empty graph; indexes stay."""
    with (
        neo4j.GraphDatabase.driver(uri, auth=auth, notifications_min_severity="OFF") as driver,
        driver.session(database=database) as s,
    ):
        while True:
            rec = s.run("MATCH (n) WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS n").single()
            if not rec or not rec["n"]:
                break


def make_neo4j_tree_store(neo4j_server: Any, dimension: int, **kwargs: Any) -> Neo4jTreeStore:
    """A fresh, empty `Neo4jTreeStore` on the session's server (the vector index follows `dimension`)."""
    wipe_database(neo4j_server.uri, neo4j_server.auth)
    return Neo4jTreeStore(neo4j_server.uri, auth=neo4j_server.auth, dimension=dimension, **kwargs)


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    uri = os.environ.get("HIPPOGRAPH_TEST_NEO4J_URI")
    if uri:
        yield ExternalNeo4j(
            uri=uri,
            auth=(
                os.environ.get("HIPPOGRAPH_TEST_NEO4J_USER", "neo4j"),
                os.environ.get("HIPPOGRAPH_TEST_NEO4J_PASSWORD", "neo4j"),
            ),
        )
        return
    server = LocalNeo4j(tmp_path_factory.mktemp("neo4j"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def neo4j_tree_store(neo4j_server: Any) -> Iterator[Neo4jTreeStore]:
    """An empty 8-dimensional Neo4j tree store (for Neo4j-specific tests)."""
    store = make_neo4j_tree_store(neo4j_server, 8)
    try:
        yield store
    finally:
        store.close()
