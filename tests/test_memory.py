"""The `Memory` facade: CRUD, access control, bad input (typed errors, nothing written)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from hippograph.memory import AsyncMemory, Memory
from hippograph.settings import Settings
from hippograph.stores.errors import AccessDeniedError, InvalidInputError, NotFoundError
from hippograph.stores.models import MAX_TEXT_CHARS, MemoryStatus


@pytest.fixture
def memory(settings: Settings) -> Iterator[Memory]:
    with Memory(settings) as m:
        yield m


def total(memory: Memory) -> int:
    return memory.services.tree.count(statuses=list(MemoryStatus))


def test_add_search_get_update_delete(memory: Memory) -> None:
    ids = memory.add("Ana's favourite museum is the Gulbenkian", user_id="ana", metadata={"src": "test"})
    assert len(ids) == 1
    hits = memory.search("favourite museum", user_id="ana")
    # Alone in its cube, every word of the memory is in every memory: BM25 has no evidence (issue 12), only dense.
    assert hits[0].id == ids[0] and hits[0].scores["vector"] > 0 and "bm25" not in hits[0].scores
    assert memory.get(ids[0], user_id="ana").metadata == {"src": "test"}
    updated = memory.update(ids[0], "Ana's favourite museum is the MAAT", user_id="ana")
    assert updated.id == ids[0]
    assert [(v.id == ids[0], v.text, v.status) for v in memory.history(ids[0], user_id="ana")] == [
        (True, "Ana's favourite museum is the MAAT", MemoryStatus.ACTIVE),
        (False, "Ana's favourite museum is the Gulbenkian", MemoryStatus.SUPERSEDED)]
    assert "previous_versions" not in updated.metadata  # one home for history: the SUPERSEDES chain
    assert memory.search("MAAT", user_id="ana")[0].id == ids[0]
    memory.delete(ids[0], user_id="ana")
    assert memory.search("favourite museum", user_id="ana") == []
    assert memory.get(ids[0], user_id="ana").status == MemoryStatus.DELETED  # soft: kept
    memory.delete(ids[0], user_id="ana", hard=True)
    with pytest.raises(NotFoundError):
        memory.get(ids[0], user_id="ana")


def test_add_messages_one_memory_each_linked_in_order(memory: Memory) -> None:
    ids = memory.add([{"role": "user", "content": "I bought a red bike"},
                      {"role": "assistant", "content": "Nice! Where will you ride?"},
                      {"role": "user", "content": "Along the river"}], user_id="bo", session_id="s1")
    assert len(ids) == 3
    items = memory.services.tree.get(ids)
    assert [m.turn_index for m in items] == [0, 1, 2]
    # the turn model: speaker (the user id for the user's own messages, else the role), time, replied-to turn
    assert [m.key.split(" on ")[0] for m in items] == ["bo", "assistant", "bo"]
    assert items[1].key.endswith("| replying to bo: I bought a red bike")
    assert items[2].key.endswith("| replying to assistant: Nice! Where will you ride?")
    nxt = memory.services.tree.edges([ids[0], ids[1]], rel="NEXT")  # type: ignore[arg-type]
    assert sorted((e.src, e.dst) for e in nxt) == sorted([(ids[0], ids[1]), (ids[1], ids[2])])


def test_exact_duplicates_are_not_stored_twice(memory: Memory) -> None:
    first = memory.add("I drink oat milk", user_id="cat")
    again = memory.add("  i DRINK oat   milk ", user_id="cat")
    assert again == first and total(memory) == 1


def test_user_reads_only_own_and_shared_cubes(memory: Memory) -> None:
    (secret,) = memory.add("Ana's diary: the surprise party is on Friday", user_id="ana")
    memory.add("Ben likes chess", user_id="ben")
    assert all("diary" not in h.text for h in memory.search("surprise party", user_id="ben"))
    with pytest.raises(NotFoundError):
        memory.get(secret, user_id="ben")
    with pytest.raises(NotFoundError):
        memory.update(secret, "hacked", user_id="ben")
    with pytest.raises(NotFoundError):
        memory.delete(secret, user_id="ben")
    with pytest.raises(AccessDeniedError):
        memory.search("party", user_id="ben", cube_ids=["ana.default"])
    with pytest.raises(AccessDeniedError):
        memory.add("planted", user_id="ben", cube_id="ana.default")
    # share read-only: an invitation first; once Ben accepts he can read and search, not change
    memory.share("ana.default", user_id="ana", with_user="ben", access="read")
    with pytest.raises(NotFoundError):
        memory.get(secret, user_id="ben")
    assert [s.cube_id for s in memory.invitations(user_id="ben")] == ["ana.default"]
    memory.accept_share("ana.default", user_id="ben")
    assert memory.get(secret, user_id="ben").id == secret
    assert memory.search("surprise party", user_id="ben")[0].id == secret
    with pytest.raises(AccessDeniedError):
        memory.update(secret, "hacked", user_id="ben")
    with pytest.raises(AccessDeniedError):
        memory.share("ana.default", user_id="ben", with_user="cy")
    assert memory.get(secret, user_id="ana").text.startswith("Ana's diary")
    # a share grants exactly that cube
    memory.create_cube("ana.work", user_id="ana")
    (work,) = memory.add("Ana's salary review", user_id="ana", cube_id="ana.work")
    with pytest.raises(NotFoundError):
        memory.get(work, user_id="ben")
    # a chat turn is remembered in the cube it names, and only in a cube the user may write
    turn = memory.chat("Remember that the offsite is in Porto", user_id="ana", cube_id="ana.work")
    assert [m.cube_id for m in memory.services.tree.get(turn.written_ids)] == ["ana.work"]
    before = memory.services.tree.count(cube_ids=["ana.default"])
    with pytest.raises(AccessDeniedError):
        memory.chat("planted via chat", user_id="ben", cube_id="ana.default")
    assert memory.services.tree.count(cube_ids=["ana.default"]) == before


@pytest.mark.parametrize("bad", ["", "   ", "x" * (MAX_TEXT_CHARS + 1), "y" * 1_000_000, 42, None, {"text": "hi"},
                                 b"\xff\xfe invalid utf-8", "\ud800 lone surrogate"])
def test_bad_text_is_rejected_and_nothing_written(memory: Memory, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        memory.add(bad, user_id="dan")  # type: ignore[arg-type]
    assert total(memory) == 0


def test_bad_ids_and_types_are_typed_errors(memory: Memory) -> None:
    for user in ['u1" or user_id != "x', "a b", "", "x" * 200, "../etc", "n' OR 1=1 --"]:
        with pytest.raises(InvalidInputError):
            memory.add("hello", user_id=user)
    with pytest.raises(InvalidInputError):
        memory.search("hello", user_id="dan", top_k=0)
    with pytest.raises(InvalidInputError):
        memory.search("hello", user_id="dan", cube_ids="dan.default")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        memory.add([{"role": "nobody", "content": 3}], user_id="dan")
    with pytest.raises(InvalidInputError):
        memory.add("hello", user_id="dan", metadata=["not", "a", "dict"])  # type: ignore[arg-type]
    assert total(memory) == 0


def test_unknown_user_is_not_found_when_auto_create_is_off(settings: Settings) -> None:
    with Memory(settings.model_copy(update={"auto_create_users": False})) as memory:
        with pytest.raises(NotFoundError):
            memory.add("hello", user_id="ghost")
        with pytest.raises(NotFoundError):
            memory.search("hello", user_id="ghost")
        assert total(memory) == 0 and memory.services.registry.list_users() == []


def test_async_twin(settings: Settings) -> None:
    async def run() -> list[str]:
        memory = AsyncMemory(settings)
        try:
            ids = await memory.add("async memories work", user_id="eli")
            hits = await memory.search("async", user_id="eli")
            return [ids[0], hits[0].id]
        finally:
            await memory.close()

    a, b = asyncio.run(run())
    assert a == b
