"""Shared fixtures. Every TreeStore backend runs the same contract suite via the `tree_store` fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hippograph.evals.common import shared_data_dir
from hippograph.stores.embedders import HashingEmbeddings
from hippograph.stores.tree.base import TreeStore
from hippograph.stores.tree.embedded import EmbeddedTreeStore

pytest_plugins = ["tests.neo4j_fixture", "tests.redis_fixture"]

REPO = Path(__file__).resolve().parent.parent
#: The shared data folder (never copied into the repo): `../shared/data` or HIPPOGRAPH_SHARED_DATA.
SHARED_DATA = shared_data_dir()
DIM = 64
TREE_BACKENDS = ["embedded", "neo4j"]


def shared_file(relative: str) -> Path:
    """A file of the licensed shared data set, or a skip with the reason when it is absent (fresh clones:
    the data is not redistributable; see the README's "Test data" section)."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set HIPPOGRAPH_SHARED_DATA to the data folder)")
    return path


@pytest.fixture(scope="session")
def hashing() -> HashingEmbeddings:
    return HashingEmbeddings(DIM)


@pytest.fixture(scope="session")
def minilm():  # type: ignore[no-untyped-def]
    from hippograph.stores.embedders import MiniLMEmbeddings

    return MiniLMEmbeddings()


@pytest.fixture(params=TREE_BACKENDS)
def open_tree_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], TreeStore]]:
    """Opens (and reopens) one backend's store over the same data, empty at the start of each test."""
    opened: list[TreeStore] = []
    if request.param == "embedded":
        def open_store() -> TreeStore:
            opened.append(EmbeddedTreeStore(tmp_path / "tree.sqlite", dimension=DIM))
            return opened[-1]
    else:
        from hippograph.stores.tree.neo4j import Neo4jTreeStore
        from tests.neo4j_fixture import make_neo4j_tree_store

        server = request.getfixturevalue("neo4j_server")
        opened.append(make_neo4j_tree_store(server, DIM))  # wipes the database once, for this test

        def open_store() -> TreeStore:
            if len(opened) == 1 and not getattr(opened[0], "_handed_out", False):
                opened[0]._handed_out = True  # type: ignore[attr-defined]
                return opened[0]
            opened.append(Neo4jTreeStore(server.uri, auth=server.auth, dimension=DIM))
            return opened[-1]
    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def tree_store(open_tree_store: Callable[[], TreeStore]) -> TreeStore:
    """A fresh, empty tree store of each backend (64-dim vectors)."""
    return open_tree_store()


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings for an isolated embedded install in a temp dir (hashing embedder: fast, for unit tests)."""
    from hippograph.settings import Settings

    return Settings(data_dir=tmp_path / "data", embedder=f"hashing:{DIM}", worker_in_process=False)
