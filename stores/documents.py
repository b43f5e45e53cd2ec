"""The document registry: what each ingested document (file, text or conversation session) last looked like.

Ingestion is idempotent because of it: a document is keyed by `(cube_id, doc_key)` (a file's resolved path,
a text's name, a conversation session), and the registry keeps its byte fingerprint and, in order, the content
hash and memory id of every chunk written for it. Re-ingesting:

- an unchanged document (same fingerprint) is skipped before conversion: 0 memories added;
- a changed document is diffed chunk by chunk (`diff_chunks`): unchanged chunks keep their memories, changed
  chunks are superseded (`TreeStore.supersede`: the old version is kept with status `superseded`), new chunks
  are added and vanished chunks archived (soft-deleted);
- `archive_document` soft-deletes every memory of a document (and only those no other document still uses).

One SQLite file (WAL), safe for many threads.
"""

from __future__ import annotations

import difflib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hippograph.stores.files import private_file
from hippograph.stores.scrub import scrub
from hippograph.stores.tree.base import TreeStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    cube_id TEXT NOT NULL,
    doc_key TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    path TEXT,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    chunks TEXT NOT NULL,
    sections TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (cube_id, doc_key)
);
"""


@dataclass
class ChunkRecord:
    """One chunk of a registered document: its content hash and the memory that holds it."""

    index: int
    content_hash: str
    memory_id: str
    heading_path: list[str] = field(default_factory=list)
    start: int = 0
    end: int = 0
    derived_ids: list[str] = field(default_factory=list)
    """Memories extracted from this chunk in fine mode (archived with it)."""


@dataclass
class DocumentRecord:
    cube_id: str
    doc_key: str
    doc_id: str
    kind: str
    """`file`, `text` or `conversation`."""
    title: str
    fingerprint: str
    path: str | None = None
    status: str = "active"
    """`active` or `deleted`."""
    chunks: list[ChunkRecord] = field(default_factory=list)
    sections: dict[str, str] = field(default_factory=dict)
    """Heading path (joined with ` › `) -> id of its section node (the document node is under `""`)."""
    updated_at: float = field(default_factory=time.time)

    def memory_ids(self) -> set[str]:
        ids = {self.doc_id, *self.sections.values()}
        for chunk in self.chunks:
            ids.add(chunk.memory_id)
            ids.update(chunk.derived_ids)
        return ids


class DocumentRegistry:
    """Fingerprints and chunk lists of ingested documents, per cube."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            private_file(self.path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA secure_delete=ON")  # erased records leave no bytes in free pages
        self._conn.executescript(_SCHEMA)

    @staticmethod
    def _row(row: Sequence[Any]) -> DocumentRecord:
        cube_id, doc_key, doc_id, kind, title, path, fingerprint, status, chunks, sections, updated_at = row
        return DocumentRecord(
            cube_id=cube_id, doc_key=doc_key, doc_id=doc_id, kind=kind, title=title, path=path,
            fingerprint=fingerprint, status=status, chunks=[ChunkRecord(**c) for c in json.loads(chunks)],
            sections=json.loads(sections), updated_at=updated_at,
        )

    def get(self, cube_id: str, doc_key: str) -> DocumentRecord | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM documents WHERE cube_id = ? AND doc_key = ?", (cube_id, doc_key)
            ).fetchone()
        return self._row(row) if row else None

    def put(self, record: DocumentRecord) -> None:
        record.updated_at = time.time()
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (record.cube_id, record.doc_key, record.doc_id, record.kind, record.title, record.path,
                 record.fingerprint, record.status, json.dumps([asdict(c) for c in record.chunks]),
                 json.dumps(record.sections), record.updated_at),
            )

    def list(self, cube_id: str, *, status: str | None = "active") -> list[DocumentRecord]:
        sql, params = "SELECT * FROM documents WHERE cube_id = ?", [cube_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY doc_key", params).fetchall()
        return [self._row(r) for r in rows]

    def ids_in_use(self, cube_id: str, *, exclude_key: str | None = None) -> set[str]:
        """Memory ids referenced by the cube's active documents (other than `exclude_key`)."""
        used: set[str] = set()
        for record in self.list(cube_id):
            if record.doc_key != exclude_key:
                used |= record.memory_ids()
        return used

    def erase_cube(self, cube_id: str) -> int:
        """Forget every document record of a cube for good (erasure)."""
        with self._lock:
            deleted = self._conn.execute("DELETE FROM documents WHERE cube_id = ?", (cube_id,)).rowcount
            scrub(self._conn)
        return int(deleted)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


@dataclass
class ChunkDiff:
    """How a document's new chunk list relates to the registered one (positions into each list)."""

    keep: list[tuple[int, int]] = field(default_factory=list)
    """(old index, new index): same content, the old memory stays."""
    supersede: list[tuple[int, int]] = field(default_factory=list)
    """(old index, new index): the chunk at this place changed; the new version supersedes the old."""
    add: list[int] = field(default_factory=list)
    """New indexes with no counterpart."""
    archive: list[int] = field(default_factory=list)
    """Old indexes whose chunk is gone."""


def diff_chunks(old_hashes: Sequence[str], new_hashes: Sequence[str]) -> ChunkDiff:
    """Align two chunk-hash sequences (difflib): equal runs are kept, replaced runs pair up position by
    position as supersessions, the rest are additions or archivals."""
    diff = ChunkDiff()
    matcher = difflib.SequenceMatcher(a=list(old_hashes), b=list(new_hashes), autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            diff.keep += list(zip(range(i1, i2), range(j1, j2), strict=True))
            continue
        paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
        diff.supersede += [(i1 + k, j1 + k) for k in range(paired)]
        diff.archive += list(range(i1 + paired, i2))
        diff.add += list(range(j1 + paired, j2))
    return diff


def archive_document(tree: TreeStore, registry: DocumentRegistry, cube_id: str, doc_key: str) -> int:
    """Soft-delete every memory of a registered document (kept with status `deleted`) and mark it deleted.

    Memories another active document of the cube still uses (an exact duplicate chunk) are left alone.
    Returns how many memories were archived; 0 for an unknown or already deleted document.
    """
    record = registry.get(cube_id, doc_key)
    if record is None or record.status != "active":
        return 0
    ids = record.memory_ids() - registry.ids_in_use(cube_id, exclude_key=doc_key)
    changed = tree.delete(sorted(ids)) if ids else 0
    record.status = "deleted"
    registry.put(record)
    return changed
