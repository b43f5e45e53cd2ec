"""Checkpointers from settings: SQLite in the data dir by default, Postgres for servers."""

from __future__ import annotations

import sqlite3

from langgraph.checkpoint.base import BaseCheckpointSaver

from hippograph.settings import Settings


def open_checkpointer(settings: Settings) -> BaseCheckpointSaver:
    url = settings.checkpoint_path
    if url.startswith(("postgres://", "postgresql://")):
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row

        conn = Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(conn)  # type: ignore[arg-type]
        saver.setup()
        return saver
    from langgraph.checkpoint.sqlite import SqliteSaver

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteSaver(sqlite3.connect(url, check_same_thread=False))
