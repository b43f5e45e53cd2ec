"""Checkpoints restore typed chat state without LangGraph's unregistered-type warnings; graph outputs hold only
what callers need (no query vector, no resolved cube ids)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from hippograph.graphs.chat import build_chat_graph
from hippograph.graphs.checkpoint import checkpoint_serializer, state_types
from hippograph.graphs.search import build_search_graph
from hippograph.nodes.state import ChatContext, ChatState
from hippograph.settings import Settings
from hippograph.stores.models import MemoryItem, MemoryStatus, MemoryType, SearchHit
from hippograph.stores.preferences.base import PreferenceHit, PreferenceKind
from hippograph.stores.services import Services

INTERNAL = {"query_vector", "read_cube_ids", "write_cube_id", "user_id", "session_id"}


@pytest.fixture
def services(tmp_path: Path):  # type: ignore[no-untyped-def]
    svc = Services.from_settings(Settings(data_dir=tmp_path / "data", embedder="hashing:64",
                                          worker_in_process=False))
    yield svc
    svc.close()


def test_the_allow_list_names_the_state_types() -> None:
    found = state_types(ChatState)
    assert {SearchHit, MemoryItem, MemoryType, MemoryStatus, PreferenceHit, PreferenceKind} <= found
    allowed = checkpoint_serializer()._allowed_msgpack_modules
    assert isinstance(allowed, set) and ("hippograph.stores.models", "SearchHit") in allowed
    assert ("os", "system") not in allowed  # an explicit list: anything else is refused, not constructed


@pytest.mark.filterwarnings("error")
def test_two_turns_resume_from_the_checkpoint_without_serializer_warnings(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    chat = build_chat_graph(services)  # the default SQLite checkpointer
    config = {"configurable": {"thread_id": "ana/t1"}}
    context = ChatContext(user_id="ana")
    with caplog.at_level(logging.INFO):  # everything a server's log would show
        first = chat.invoke({"messages": [HumanMessage("My cat Miso loves salmon treats")]}, config, context=context)
        second = chat.invoke({"messages": [HumanMessage("What treats does Miso love?")]}, config, context=context)
        restored = chat.get_state(config).values
    serde_logs = [r.getMessage() for r in caplog.records if "serde" in r.name or "msgpack" in r.getMessage()]
    assert serde_logs == []
    # Milvus Lite (opened by retrieve_prefs) adds no noise: no unimplemented-RPC tracebacks, no faiss probing
    noise = [r.getMessage() for r in caplog.records
             if "Method not implemented" in r.getMessage() or r.name.startswith("faiss")]
    assert noise == []
    assert second["memories"][0].id == first["written_ids"][0]
    # the checkpoint gives back the same typed values, not dicts
    assert [m.type for m in restored["messages"]] == ["human", "ai", "human", "ai"]
    assert isinstance(restored["memories"][0], SearchHit)
    assert restored["memories"][0].item.memory_type is MemoryType.LONG_TERM


def test_outputs_leave_internal_channels_out(services: Services) -> None:
    context = ChatContext(user_id="bo", ingest=False)
    out = build_chat_graph(services, checkpointer=None).invoke(
        {"messages": [HumanMessage("hello there")]}, context=context)
    assert not INTERNAL & set(out)
    assert {"messages", "answer", "timings"} <= set(out)
    found = build_search_graph(services).invoke({"query": "hello"}, context=context)
    assert not INTERNAL & set(found) and "memories" in found
    chat_schema = build_chat_graph(services, checkpointer=None).get_output_jsonschema()
    assert "query_vector" not in chat_schema["properties"] and "answer" in chat_schema["properties"]


def test_erasure_waits_out_a_reader_that_keeps_the_wal_checkpoint_partial(tmp_path: Path) -> None:
    import sqlite3
    import threading

    from hippograph.graphs.checkpoint import erase_threads, open_checkpointer

    settings = Settings(data_dir=tmp_path / "d", worker_in_process=False)
    saver = open_checkpointer(settings)
    saver.setup()  # type: ignore[attr-defined]
    marker = "ZQXMARKER" * 50
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    checkpoint = {"v": 1, "id": "1f0", "ts": "2026-01-01T00:00:00+00:00", "channel_values": {"note": marker},
                  "channel_versions": {}, "versions_seen": {}}
    saver.put(config, checkpoint, {}, {})  # type: ignore[arg-type]
    path = Path(settings.checkpoint_path)
    # Another connection in a read transaction: a WAL checkpoint cannot pass its snapshot while it lasts.
    reader = sqlite3.connect(path, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM checkpoints").fetchone()
    timer = threading.Timer(0.5, reader.rollback)
    timer.start()
    try:
        assert erase_threads(saver, ["t"]) == 1
    finally:
        timer.join()
        reader.close()
    assert saver.get_tuple(config) is None  # type: ignore[arg-type]
    for file in path.parent.glob(path.name + "*"):
        assert b"ZQXMARKER" not in file.read_bytes(), file.name
