"""Checkpointers from settings: SQLite in the data dir by default, Postgres for servers.

Chat state holds typed values (`SearchHit`, `PreferenceHit`, their enums). LangGraph's default serializer
restores any class it finds in a checkpoint and warns that unregistered ones will be blocked in a future
version; ours names the state's own types in its msgpack allow-list (derived from the state schema, so a new
typed field is registered the day it is added), so resuming a thread works the same after a LangGraph upgrade
and nothing else can be constructed from a checkpoint.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
import time
import typing
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel
from typing_extensions import is_typeddict

from hippograph.stores.files import private_file
from hippograph.stores.scrub import scrub
from hippograph.stores.settings import Settings


def _annotations(schema: type) -> dict[str, Any]:
    if issubclass(schema, BaseModel):
        return {name: field.annotation for name, field in schema.model_fields.items()}
    return typing.get_type_hints(schema)


def _registered_types(annotation: Any, seen: set[Any]) -> Iterator[type]:
    """Pydantic models and enums reachable from a type annotation (through lists, unions, Annotated...)."""
    if annotation in seen:
        return
    seen.add(annotation)
    for arg in typing.get_args(annotation):
        yield from _registered_types(arg, seen)
    if not isinstance(annotation, type):
        return
    if issubclass(annotation, enum.Enum):
        yield annotation
    elif issubclass(annotation, BaseModel) or is_typeddict(annotation):
        if issubclass(annotation, BaseModel):
            yield annotation
        for field_type in _annotations(annotation).values():
            yield from _registered_types(field_type, seen)


def state_types(*schemas: type) -> set[type]:
    """The classes a checkpoint of these state schemas may contain, beyond LangGraph's own safe types."""
    seen: set[Any] = set()
    return {found for schema in schemas for found in _registered_types(schema, seen)}


@cache
def checkpoint_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer with hippograph's state types on its msgpack allow-list (nothing else)."""
    from hippograph.nodes.state import ChatState

    allowed: list[type] = sorted(state_types(ChatState), key=lambda t: f"{t.__module__}.{t.__qualname__}")
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def open_checkpointer(settings: Settings) -> BaseCheckpointSaver:
    url = settings.checkpoint_path
    if url.startswith(("postgres://", "postgresql://")):
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row

        conn = Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(conn, serde=checkpoint_serializer())  # type: ignore[arg-type]
        saver.setup()
        return saver
    from langgraph.checkpoint.sqlite import SqliteSaver

    lite = sqlite3.connect(private_file(url), check_same_thread=False)
    lite.execute("PRAGMA secure_delete=ON")  # an erased thread leaves no bytes in free pages
    return SqliteSaver(lite, serde=checkpoint_serializer())


#: Rounds of delete + WAL checkpoint + check before erasure gives up (a round waits `ERASE_PAUSE_S` after a miss).
ERASE_ROUNDS = 30
ERASE_PAUSE_S = 0.1


def erase_threads(saver: BaseCheckpointSaver, thread_ids: Iterable[str]) -> int:
    """Delete threads' checkpoints and pending writes for good (erasure). Returns how many threads were named.

    SQLite: the file is rewritten (`stores.scrub`: `secure_delete` alone leaves old cell images in live pages)
    and the WAL folded into it. The deletion is checked, not assumed: a checkpoint that another reader kept
    partial (old page versions, with the erased text, stay in the file) or a checkpoint row written after the
    delete starts another round.
    Raises `RuntimeError` if the bytes are still there after `ERASE_ROUNDS` rounds.
    """
    named = list(thread_ids)
    threads = list(dict.fromkeys(named))
    for _ in range(ERASE_ROUNDS):
        for thread_id in threads:
            saver.delete_thread(thread_id)
        if _scrubbed(saver) and not any(saver.get_tuple({"configurable": {"thread_id": t}}) for t in threads):
            return len(named)
        time.sleep(ERASE_PAUSE_S)
    raise RuntimeError(f"erasure of {len(threads)} checkpoint thread(s) could not complete: the checkpoint store "
                       "kept a reader open or rows came back; retry the erasure")


def _scrubbed(saver: BaseCheckpointSaver) -> bool:
    """Rewrite a SQLite saver's file and truncate its WAL; False if a reader kept the WAL partial."""
    conn = getattr(saver, "conn", None)
    if not isinstance(conn, sqlite3.Connection):
        return True  # Postgres: the rows are deleted; reclaiming their space is the server's VACUUM (not run here)
    with getattr(saver, "lock", contextlib.nullcontext()):
        return scrub(conn)
