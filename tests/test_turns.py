"""The one conversation turn model (`nodes/turns.py`): accepted message shapes, time, key, question rules — and the
same turn written through every write path (Memory.add, Memory.ingest, the chat graph, REST over a socket, the
BaseStore adapter) becomes the same memory: same key, text, time, id rule and neighbours."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage

from hippograph.graphs.chat import build_chat_graph
from hippograph.memory import Memory
from hippograph.nodes.state import ChatContext
from hippograph.nodes.turns import format_time, parse_time, to_turn, turn_id, turn_memories
from hippograph.settings import Settings
from hippograph.store import HippoStore
from hippograph.stores.errors import InvalidInputError
from hippograph.stores.models import MemoryItem
from hippograph.stores.services import Services
from hippograph.stores.tree.base import Rel, TreeStore
from hippograph.stores.tree.embedded import EmbeddedTreeStore

MAY_8 = "1:56 pm on 8 May, 2023"
MAY_8_TS = 1683554160.0
ROWS: list[dict[str, Any]] = [
    {"speaker": "Caroline", "text": "I went to the LGBTQ support group yesterday.", "dia_id": "D1:1",
     "timestamp": MAY_8},
    {"speaker": "Melanie", "text": "How did it go? Was it helpful?", "dia_id": "D1:2", "timestamp": MAY_8},
    {"speaker": "Caroline", "text": "It was powerful: the stories gave me courage.", "dia_id": "D1:3",
     "timestamp": MAY_8},
    {"speaker": "Melanie", "text": "I painted a lake sunrise last year.", "dia_id": "D1:4", "timestamp": MAY_8},
]


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedder="hashing:64", worker_in_process=False)


@pytest.fixture()
def memory(settings: Settings) -> Iterator[Memory]:
    with Memory(services=Services.from_settings(settings)) as m:
        yield m


# -- shapes and time ----------------------------------------------------------------------------------------


def test_every_accepted_message_shape_reads_the_same() -> None:
    lc = HumanMessage(content="I went to the group.", name="Caroline", id="D1:1",
                      additional_kwargs={"timestamp": MAY_8})
    openai = {"role": "user", "name": "Caroline", "content": "I went to the group.", "id": "D1:1",
              "timestamp": MAY_8}
    row = {"speaker": "Caroline", "text": "I went to the group.", "dia_id": "D1:1", "timestamp": MAY_8}
    turns = [to_turn(m) for m in (lc, openai, row)]
    assert {(t.speaker, t.text, t.ref, t.timestamp) for t in turns} == {
        ("Caroline", "I went to the group.", "D1:1", MAY_8)}
    # no name: the user's own messages take the user id, others their role
    assert to_turn(HumanMessage("hi"), user_name="ana").speaker == "ana"
    assert to_turn({"role": "assistant", "content": "hello"}, user_name="ana").speaker == "assistant"
    assert to_turn(AIMessage("ok", response_metadata={"timestamp": 5.0})).timestamp == 5.0
    assert to_turn("plain text", user_name="bo").speaker == "bo"
    with pytest.raises(InvalidInputError):
        to_turn({"role": "nobody", "content": "x"})
    with pytest.raises(InvalidInputError):
        to_turn({"role": "user", "content": 3})
    with pytest.raises(InvalidInputError):
        to_turn(42)  # type: ignore[arg-type]


def test_times_parse_from_every_form_and_read_back_the_way_people_write_them() -> None:
    assert parse_time(MAY_8) == MAY_8_TS
    assert parse_time("2023-05-08T13:56:00Z") == MAY_8_TS == parse_time("2023-05-08 13:56")
    assert parse_time("2023/05/08 (Mon) 13:56") == MAY_8_TS
    assert parse_time(MAY_8_TS) == MAY_8_TS == parse_time(str(MAY_8_TS))
    assert parse_time(None) is None and parse_time("no date here at all") is None
    assert format_time(MAY_8_TS) == MAY_8


def test_key_carries_speaker_time_and_the_replied_to_turn() -> None:
    items = turn_memories([to_turn(r) for r in ROWS], user_id="u", cube_id="u.c", session_id="s1")
    assert [i.key.split(" | ")[0] for i in items] == [f"{r['speaker']} on {MAY_8}" for r in ROWS]
    assert "replying to" not in items[0].key
    assert items[1].key.endswith("| replying to Caroline: I went to the LGBTQ support group yesterday.")
    assert [i.occurred_at for i in items] == [MAY_8_TS] * 4
    assert [i.turn_index for i in items] == [0, 1, 2, 3]
    assert items[1].tags == ["question"] and items[0].tags == []
    assert [i.id for i in items] == [turn_id("u.c", "s1", r["dia_id"]) for r in ROWS]
    # no own timestamp: the session date, else now
    (dated,) = turn_memories([to_turn({"speaker": "A", "text": "x"})], user_id="u", cube_id="u.c",
                             session_id="s", session_date="2023-05-08 13:56")
    assert dated.occurred_at == MAY_8_TS
    (undated,) = turn_memories([to_turn({"speaker": "A", "text": "x"})], user_id="u", cube_id="u.c")
    assert undated.occurred_at is not None and undated.key.startswith("A on ")
    # a photo's caption is part of what was said
    (photo,) = turn_memories([to_turn({**ROWS[3], "blip_caption": "a painting of a lake"})], user_id="u",
                             cube_id="u.c", session_id="s1")
    assert photo.text.endswith("[shares a photo: a painting of a lake]")


# -- every write path ---------------------------------------------------------------------------------------


def _snapshot(tree: TreeStore, cube: str) -> dict[str, tuple[Any, ...]]:
    """dia_id -> (key, text, occurred_at, turn index, tags, texts of the adjacent turns) of a cube's turns."""
    turns = [m for m in tree.list(cube_ids=[cube], limit=100) if m.turn_index is not None]
    out = {}
    for m in turns:
        near = tree.neighbours([m.id], cube_ids=[cube], window=1)
        adjacent = sorted(n.text for n in near if n.id != m.id and n.turn_index is not None)
        out[m.source_refs[0].ref] = (m.key, m.text, m.occurred_at, m.turn_index, m.tags, adjacent)
    return out


def _next_pairs(tree: TreeStore, cube: str) -> set[tuple[str, str]]:
    ids = {m.id: m.source_refs[0].ref for m in tree.list(cube_ids=[cube], limit=100)}
    return {(ids[e.src], ids[e.dst]) for e in tree.edges(list(ids), rel=Rel.NEXT) if e.src in ids and e.dst in ids}


def test_the_same_conversation_through_every_write_path_is_the_same_memory(memory: Memory, tmp_path: Path) -> None:
    from tests.test_http import ADMIN, free_port, start_server, stop, wait_http

    user = "caro"
    cubes = {p: f"{user}.{p}" for p in ("add", "add1", "ingest", "chat")}
    for cube in cubes.values():
        memory.create_cube(cube, user_id=user)
    # 1. Memory.add, the whole session at once, as dataset rows
    memory.add(ROWS, user_id=user, cube_id=cubes["add"], session_id="s1")
    # 2. Memory.add, one OpenAI-style message per call (the session continues across calls)
    for r in ROWS:
        memory.add([{"role": "user", "name": r["speaker"], "content": r["text"], "id": r["dia_id"],
                     "timestamp": r["timestamp"]}], user_id=user, cube_id=cubes["add1"], session_id="s1")
    # 3. Memory.ingest(conversations=...)
    out = memory.ingest(user_id=user, cube_id=cubes["ingest"], conversations=[{"session_id": "s1", "messages": ROWS}])
    assert out["summary"]["errors"] == 0
    # 4. the chat graph, one LangChain message per turn (a checkpointed thread), no chat model
    chat = build_chat_graph(memory.services)
    context = ChatContext(user_id=user, cube_ids=[cubes["chat"]], write_cube_id=cubes["chat"], session_id="s1")
    for r in ROWS:
        message = HumanMessage(content=r["text"], name=r["speaker"], id=r["dia_id"],
                               additional_kwargs={"timestamp": r["timestamp"]})
        chat.invoke({"messages": [message]}, {"configurable": {"thread_id": "caro/s1"}}, context=context)
    # 5. REST over a real socket (a server process with its own data dir, read back once it has stopped)
    port = free_port()
    proc = start_server(tmp_path / "rest", port, tmp_path / "server.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", proc)
        with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN}, timeout=60) as admin:
            created = admin.post("/v1/users", json={"user_id": "resty"})
            assert created.status_code == 201, created.text
            key = created.json()["api_key"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
            body = {"session_id": "s1", "messages": [
                {"role": "user", "name": r["speaker"], "content": r["text"], "id": r["dia_id"],
                 "timestamp": r["timestamp"]} for r in ROWS]}
            written = client.post("/v1/memories", json=body)
            assert written.status_code == 201, written.text
    finally:
        stop(proc)
    rest_tree = EmbeddedTreeStore(tmp_path / "rest" / "tree.sqlite", dimension=64)
    trees: dict[str, TreeStore] = {**{p: memory.services.tree for p in cubes}, "rest": rest_tree}
    cubes["rest"] = "resty.default"

    expected = _snapshot(memory.services.tree, cubes["add"])
    assert set(expected) == {r["dia_id"] for r in ROWS}
    assert expected["D1:3"][5] == sorted([ROWS[1]["text"], ROWS[3]["text"]])  # neighbours: the adjacent turns
    for path, cube in cubes.items():
        tree = trees[path]
        assert _snapshot(tree, cube) == expected, path
        assert _next_pairs(tree, cube) == {("D1:1", "D1:2"), ("D1:2", "D1:3"), ("D1:3", "D1:4")}, path
        ids = {m.source_refs[0].ref: m.id for m in tree.list(cube_ids=[cube], limit=100) if m.turn_index is not None}
        assert ids == {r["dia_id"]: turn_id(cube, "s1", r["dia_id"]) for r in ROWS}, path
    rest_tree.close()
    # 6. the BaseStore adapter: a message-shaped value is a turn too (a loose one: no session to reply in)
    store = HippoStore(memory.services, user_id=user, cube_id=f"{user}.default")
    store.put(("chat",), "first", ROWS[0])
    (stored,) = [m for m in memory.services.tree.list(cube_ids=[f"{user}.default"]) if m.source == "store"]
    assert (stored.key, stored.text, stored.occurred_at) == expected["D1:1"][:3]
    assert store.get(("chat",), "first").value == ROWS[0]  # type: ignore[union-attr]
    # replaying the conversation through any path writes nothing new
    before = memory.services.tree.count(cube_ids=[cubes["chat"]])
    memory.add(ROWS, user_id=user, cube_id=cubes["chat"], session_id="s1")
    assert memory.services.tree.count(cube_ids=[cubes["chat"]]) == before


def test_plain_text_is_a_loose_turn_of_the_user(memory: Memory) -> None:
    (memory_id,) = memory.add("I moved to Lisbon in May", user_id="ana")
    item = memory.get(memory_id, user_id="ana")
    assert item.key.startswith("ana on ") and item.turn_index is None and item.occurred_at is not None
    assert abs(item.occurred_at - item.created_at) < 5
    assert memory.add("  i moved to LISBON in may ", user_id="ana") == [memory_id]  # exact duplicate


# -- questions (issue 12) -----------------------------------------------------------------------------------


def test_a_repeated_question_is_stored_once_and_never_outranks_the_answer(memory: Memory) -> None:
    first = memory.add([{"role": "user", "content": "Where is my passport?"},
                        {"role": "user", "content": "My passport is in the blue drawer of the desk."}],
                       user_id="dan", session_id="s1")
    again = memory.add([{"role": "user", "content": "Where is my passport?"}], user_id="dan", session_id="s2")
    assert again == first[:1]  # asked again: the same memory, not a copy
    hits = memory.search("Where is my passport?", user_id="dan", top_k=5)
    texts = [h.text for h in hits]
    assert texts.index("My passport is in the blue drawer of the desk.") < texts.index("Where is my passport?")
    assert "question" in memory.get(first[0], user_id="dan").tags


# -- the indexed time column --------------------------------------------------------------------------------


def test_occurred_at_is_an_indexed_column_also_in_stores_made_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:  # the schema before occurred_at existed
        old.execute("CREATE TABLE memories (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, cube_id TEXT NOT "
                    "NULL, status TEXT NOT NULL, session_id TEXT, turn_index INTEGER, parent_id TEXT, memory_type "
                    "TEXT NOT NULL, content_hash TEXT NOT NULL, created_at REAL NOT NULL, seq INTEGER NOT NULL, "
                    "data TEXT NOT NULL, embedding BLOB NOT NULL)")
    store = EmbeddedTreeStore(path, dimension=4)
    item = MemoryItem(user_id="u", cube_id="u.c", text="x", occurred_at=MAY_8_TS, embedding=[1.0, 0, 0, 0])
    store.add([item])
    assert store.get([item.id])[0].occurred_at == MAY_8_TS
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT occurred_at FROM memories WHERE id = ?", (item.id,)).fetchone() == (MAY_8_TS,)
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT id FROM memories WHERE cube_id = 'u.c' AND occurred_at > 0"
                            ).fetchall()
        assert any("memories_time" in str(row) for row in plan)
    store.close()
