"""Embedded tree store specifics (the shared behaviour is in tests/contract)."""

from __future__ import annotations

from pathlib import Path

from hippograph.stores.embedders import HashingEmbeddings
from hippograph.stores.models import MemoryItem, MemoryStatus
from hippograph.stores.tree.embedded import EmbeddedTreeStore

EMB = HashingEmbeddings(16)
ACTIVE = (MemoryStatus.ACTIVE,)


def mem(text: str, cube: str) -> MemoryItem:
    return MemoryItem(user_id="u1", cube_id=cube, text=text, embedding=EMB.embed_query(text))


def test_row_counts_that_steer_text_search_follow_every_write(tmp_path: Path) -> None:
    # (rows of the cubes with the statuses, rows of the cubes, rows of the table): kept with the vector cache so a
    # text search never counts every cube; writes through another store object (another process) count too
    store = EmbeddedTreeStore(tmp_path / "tree.sqlite", dimension=16)
    other = EmbeddedTreeStore(tmp_path / "tree.sqlite", dimension=16)

    def counts(cubes: list[str], statuses: tuple[MemoryStatus, ...] = ACTIVE) -> tuple[int, int, int]:
        store._refresh_vectors()  # as every search does first
        return store._scope_rows(cubes, statuses)

    mine = [mem(f"kayak trip {i}", "c1") for i in range(4)]
    store.add([*mine, mem("kayak shop", "c2")])
    assert counts(["c1"]) == (4, 4, 5)
    other.delete([mine[0].id])  # soft: still a row, no longer active
    other.delete([mine[1].id], hard=True)
    assert counts(["c1"]) == (2, 3, 4)
    assert counts(["c1"], (MemoryStatus.ACTIVE, MemoryStatus.DELETED)) == (3, 3, 4)
    other.add([mem("kayak again", "c2"), mem("new cube", "c3")])
    assert counts(["c2", "c3"]) == (3, 3, 6)
    assert counts(["nowhere"]) == (0, 0, 6)
    # the text search over c1 (half the table or more: matched table-wide, filtered after) keeps to c1's active rows
    assert {h.id for h in store.text_search("kayak", cube_ids=["c1"], k=10)} == {mine[2].id, mine[3].id}
    store.close()
    other.close()
