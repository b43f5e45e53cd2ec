"""The embedded tree store: SQLite (WAL) for records, FTS5 for BM25, an in-memory numpy matrix for vectors.

No server. Many processes may write: SQLite serialises writers (`BEGIN IMMEDIATE`), and every write bumps a
global sequence number so each process's vector cache catches up incrementally (rows with a newer `seq`) before
it searches. Exact cosine over the cube's matrix is a single BLAS call: 100k x 384 takes a few milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hippograph.stores.errors import InvalidInputError, NotFoundError
from hippograph.stores.files import private_file
from hippograph.stores.models import MemoryItem, MemoryStatus, SearchHit, now
from hippograph.stores.scrub import scrub
from hippograph.stores.text import STOP_WORDS, WORD
from hippograph.stores.tree.base import (
    ENTITY_FANOUT,
    Edge,
    RecallQuery,
    RecallRound,
    Rel,
    entity_key,
    entity_weight,
    recall_round_by_calls,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    cube_id TEXT NOT NULL,
    status TEXT NOT NULL,
    session_id TEXT,
    turn_index INTEGER,
    parent_id TEXT,
    memory_type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_cube ON memories(cube_id, status, created_at);
CREATE INDEX IF NOT EXISTS memories_session ON memories(cube_id, session_id, turn_index);
-- working memory of a session (read on every turn): without it SQLite walks the whole cube by created_at
CREATE INDEX IF NOT EXISTS memories_kind ON memories(cube_id, session_id, memory_type, status, created_at);
CREATE INDEX IF NOT EXISTS memories_hash ON memories(cube_id, content_hash);
CREATE INDEX IF NOT EXISTS memories_parent ON memories(parent_id);
CREATE INDEX IF NOT EXISTS memories_seq ON memories(seq);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(body, scope, tokenize = 'porter unicode61');
CREATE TABLE IF NOT EXISTS edges (
    src TEXT NOT NULL, rel TEXT NOT NULL, dst TEXT NOT NULL, props TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (src, rel, dst)
);
CREATE INDEX IF NOT EXISTS edges_dst ON edges(dst, rel);
CREATE TABLE IF NOT EXISTS tombstones (id TEXT NOT NULL, cube_id TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
-- the entity graph: Entity nodes (one per cube and normalised name) and MENTIONS edges memory -> entity
CREATE TABLE IF NOT EXISTS entities (key TEXT PRIMARY KEY, cube_id TEXT NOT NULL, name TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entities_cube ON entities(cube_id, name);
CREATE TABLE IF NOT EXISTS mentions (memory_id TEXT NOT NULL, entity TEXT NOT NULL, PRIMARY KEY (memory_id, entity));
CREATE INDEX IF NOT EXISTS mentions_entity ON mentions(entity);
INSERT OR IGNORE INTO meta VALUES ('seq', 0);
"""



def query_terms(text: str) -> list[str]:
    """Plain text -> distinct lower-case words (stopwords dropped unless nothing else is left)."""
    words = [w for w in WORD.findall(text.lower()) if w not in STOP_WORDS]
    return list(dict.fromkeys(words or WORD.findall(text.lower())))[:64]


def quoted(term: str) -> str:
    """An FTS5 string literal: whatever the term holds, it is matched as text, never parsed as syntax."""
    return '"' + term.replace('"', '""') + '"'


def fts_query(text: str) -> str:
    """Plain text -> a safe FTS5 query: each word quoted (no operators survive), OR-ed together."""
    return " OR ".join(quoted(w) for w in query_terms(text))


def cube_token(cube_id: str) -> str:
    """An opaque single-token name for a cube: a hash, so ids like `a.b` and `a-b` never collide."""
    return "cube" + hashlib.blake2b(cube_id.encode(), digest_size=10).hexdigest()


def status_token(status: MemoryStatus | str) -> str:
    return "status" + MemoryStatus(status).value


def scope_tokens(cube_id: str, status: MemoryStatus | str) -> str:
    """The FTS `scope` column. A text search over cubes that are a small part of the table filters on their
    tokens inside the full-text index, so its cost follows the cubes, not the table (`text_search`)."""
    return f"{cube_token(cube_id)} {status_token(status)}"


def _any_of(tokens: list[str]) -> str:
    return "(" + " OR ".join(f"scope:{quoted(t)}" for t in tokens) + ")"


@dataclass
class _CubeVectors:
    """One cube's vectors, grown in place as rows arrive."""

    dimension: int
    ids: list[str] = field(default_factory=list)
    row_of: dict[str, int] = field(default_factory=dict)
    matrix: np.ndarray = field(init=False)
    status: np.ndarray = field(init=False)
    size: int = 0
    live: int = 0  # rows not hard-deleted (status >= 0)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((0, self.dimension), dtype=np.float32)
        self.status = np.zeros(0, dtype=np.int8)

    def upsert(self, memory_id: str, vector: np.ndarray, status_code: int) -> int:
        """Add or replace a row; returns the change in live rows."""
        row = self.row_of.get(memory_id)
        if row is None:
            if self.size == self.matrix.shape[0]:
                capacity = max(1024, self.size * 2)
                grown = np.zeros((capacity, self.dimension), dtype=np.float32)
                grown[: self.size] = self.matrix[: self.size]
                status = np.full(capacity, -1, dtype=np.int8)
                status[: self.size] = self.status[: self.size]
                self.matrix, self.status = grown, status
            row = self.size
            self.size += 1
            self.ids.append(memory_id)
            self.row_of[memory_id] = row
        added = int(self.status[row] < 0 <= status_code)  # a new row starts at -1 (see the growth above)
        self.matrix[row] = vector
        self.status[row] = status_code
        self.live += added
        return added

    def remove(self, memory_id: str) -> int:
        """Mark a row hard-deleted; returns the change in live rows."""
        row = self.row_of.get(memory_id)
        if row is None or self.status[row] < 0:
            return 0
        self.status[row] = -1
        self.live -= 1
        return -1


_STATUS_CODE = {MemoryStatus.ACTIVE: 0, MemoryStatus.SUPERSEDED: 1, MemoryStatus.DELETED: 2}
#: Most rows a text search scores (see `_within_budget`); document frequencies are cached this long.
TEXT_ROW_BUDGET = 6_000
DF_CACHE_SECONDS = 60.0


class EmbeddedTreeStore:
    """Tree memory in one SQLite file. Safe for many threads and many processes."""

    def __init__(self, path: str | Path, *, dimension: int) -> None:
        self.path = Path(path)
        self.dimension = dimension
        if str(path) != ":memory:":
            private_file(self.path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA secure_delete=ON")  # erased rows leave no bytes in free pages
        self._conn.executescript(_SCHEMA)
        self._add_time_column()
        self._cubes: dict[str, _CubeVectors] = {}
        self._live_rows = 0  # rows in the table, kept with the cache: a text search must not count every cube
        self._cache_seq = 0
        self._df_cache: dict[tuple[str, str], tuple[int, float]] = {}
        self._scans: ThreadPoolExecutor | None = None  # hybrid_search's vector scans, started on first use

    def _add_time_column(self) -> None:
        """`occurred_at` (when a turn was said), indexed per cube; added in place to stores created before it."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(memories)")}
        if "occurred_at" not in columns:
            try:
                self._conn.execute("ALTER TABLE memories ADD COLUMN occurred_at REAL")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise
        self._conn.execute("CREATE INDEX IF NOT EXISTS memories_time ON memories(cube_id, occurred_at)")

    # -- transactions -------------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """One write transaction; yields the connection and this transaction's sequence number."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("UPDATE meta SET v = v + 1 WHERE k = 'seq'")
                seq = conn.execute("SELECT v FROM meta WHERE k = 'seq'").fetchone()[0]
                yield conn, seq
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _refresh_vectors(self) -> None:
        """Pull rows written since our last look (by this or any other process) into the vector cache."""
        with self._lock:
            seq = self._conn.execute("SELECT v FROM meta WHERE k = 'seq'").fetchone()[0]
            if seq == self._cache_seq:
                return
            rows = self._conn.execute(
                "SELECT id, cube_id, status, embedding FROM memories WHERE seq > ? ORDER BY seq",
                (self._cache_seq,),
            ).fetchall()
            for memory_id, cube_id, status, blob in rows:
                cube = self._cubes.setdefault(cube_id, _CubeVectors(self.dimension))
                self._live_rows += cube.upsert(memory_id, np.frombuffer(blob, dtype=np.float32),
                                               _STATUS_CODE[MemoryStatus(status)])
            for memory_id, cube_id in self._conn.execute(
                "SELECT id, cube_id FROM tombstones WHERE seq > ?", (self._cache_seq,)
            ):
                if cube_id in self._cubes:
                    self._live_rows += self._cubes[cube_id].remove(memory_id)
            self._cache_seq = seq

    # -- writes -------------------------------------------------------------------------------------------

    def _vector_blob(self, item: MemoryItem) -> bytes:
        if item.embedding is None:
            raise InvalidInputError(f"memory {item.id} has no embedding")
        vector = np.asarray(item.embedding, dtype=np.float32)
        if vector.shape != (self.dimension,):
            raise InvalidInputError(
                f"memory {item.id}: embedding has {vector.size} dimensions, the store holds {self.dimension}"
            )
        norm = float(np.linalg.norm(vector))
        return (vector / norm if norm else vector).tobytes()

    def _upsert(self, conn: sqlite3.Connection, seq: int, item: MemoryItem, blob: bytes) -> None:
        old = conn.execute("SELECT rowid FROM memories WHERE id = ?", (item.id,)).fetchone()
        values = (
            item.id, item.cube_id, item.status.value, item.session_id, item.turn_index, item.parent_id,
            item.memory_type.value, item.content_hash, item.created_at, seq, item.model_dump_json(), blob,
            item.occurred_at,
        )
        if old is None:
            cur = conn.execute(
                "INSERT INTO memories (id, cube_id, status, session_id, turn_index, parent_id, memory_type, "
                "content_hash, created_at, seq, data, embedding, occurred_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                values,
            )
            rowid = cur.lastrowid
        else:
            rowid = old[0]
            conn.execute(
                "UPDATE memories SET id=?, cube_id=?, status=?, session_id=?, turn_index=?, parent_id=?, "
                "memory_type=?, content_hash=?, created_at=?, seq=?, data=?, embedding=?, occurred_at=? "
                "WHERE rowid=?",
                (*values, rowid),
            )
            conn.execute("DELETE FROM memories_fts WHERE rowid = ?", (rowid,))
        conn.execute(
            "INSERT INTO memories_fts (rowid, body, scope) VALUES (?, ?, ?)",
            (rowid, item.index_text, scope_tokens(item.cube_id, item.status)),
        )

    def add(self, items: Sequence[MemoryItem]) -> list[str]:
        blobs = [self._vector_blob(item) for item in items]  # validate all before writing any
        with self._write() as (conn, seq):
            for item, blob in zip(items, blobs, strict=True):
                self._upsert(conn, seq, item, blob)
        return [item.id for item in items]

    def update(self, item: MemoryItem) -> None:
        with self._write() as (conn, seq):
            row = conn.execute("SELECT embedding FROM memories WHERE id = ?", (item.id,)).fetchone()
            if row is None:
                raise NotFoundError(f"memory {item.id} not found")
            blob = self._vector_blob(item) if item.embedding is not None else row[0]
            item.updated_at = now()
            self._upsert(conn, seq, item, blob)

    def delete(self, ids: Sequence[str], *, hard: bool = False) -> int:
        changed = self._delete(ids, hard=hard)
        if hard and changed:
            self.compact()  # deleted text leaves the index and the WAL (an erasure then scrubs the file)
        return changed

    def _delete(self, ids: Sequence[str], *, hard: bool) -> int:
        changed = 0
        with self._write() as (conn, seq):
            for memory_id in ids:
                row = conn.execute("SELECT rowid, cube_id, data FROM memories WHERE id = ?", (memory_id,)).fetchone()
                if row is None:
                    continue
                rowid, cube_id, data = row
                if hard:
                    conn.execute("DELETE FROM memories WHERE rowid = ?", (rowid,))
                    conn.execute("DELETE FROM memories_fts WHERE rowid = ?", (rowid,))
                    conn.execute("DELETE FROM edges WHERE src = ? OR dst = ?", (memory_id, memory_id))
                    self._drop_mentions(conn, [memory_id])
                    conn.execute("INSERT INTO tombstones VALUES (?, ?, ?)", (memory_id, cube_id, seq))
                else:
                    item = MemoryItem.model_validate_json(data)
                    if item.status == MemoryStatus.DELETED:
                        continue
                    item.status, item.updated_at = MemoryStatus.DELETED, now()
                    item.valid_to = item.valid_to or item.updated_at
                    blob = conn.execute("SELECT embedding FROM memories WHERE rowid = ?", (rowid,)).fetchone()[0]
                    self._upsert(conn, seq, item, blob)
                changed += 1
        return changed

    def erase_cube(self, cube_id: str) -> int:
        """Hard-delete everything in a cube, then compact so none of its bytes stay in the file or the WAL."""
        with self._lock:
            ids = [r[0] for r in self._conn.execute("SELECT id FROM memories WHERE cube_id = ?", (cube_id,))]
        erased = sum(self._delete(ids[i : i + 500], hard=True) for i in range(0, len(ids), 500))
        with self._write() as (conn, _seq):
            conn.execute("DELETE FROM mentions WHERE entity IN (SELECT key FROM entities WHERE cube_id = ?)",
                         (cube_id,))
            conn.execute("DELETE FROM entities WHERE cube_id = ?", (cube_id,))
        return erased

    def scrub(self) -> None:
        """Merge the full-text index, then rewrite the file and fold the WAL into it (`stores.scrub`)."""
        with self._lock:
            self._conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('optimize')")
            scrub(self._conn)

    def compact(self) -> None:
        """Drop deleted text for good: merge the full-text index (FTS5 keeps deleted terms in old segments until
        a merge) and checkpoint the WAL into the file (whose freed pages `secure_delete` zeroes)."""
        with self._lock:
            self._conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('optimize')")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def supersede(self, old_id: str, new_item: MemoryItem) -> str:
        blob = self._vector_blob(new_item)
        with self._write() as (conn, seq):
            row = conn.execute("SELECT data, embedding FROM memories WHERE id = ?", (old_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"memory {old_id} not found")
            old = MemoryItem.model_validate_json(row[0])
            old.status, old.updated_at = MemoryStatus.SUPERSEDED, now()
            old.valid_to = old.updated_at
            self._upsert(conn, seq, new_item, blob)
            self._upsert(conn, seq, old, row[1])
            conn.execute(
                "INSERT OR IGNORE INTO edges (src, rel, dst) VALUES (?, ?, ?)",
                (new_item.id, Rel.SUPERSEDES.value, old_id),
            )
        return new_item.id

    def add_edges(self, edges: Sequence[Edge]) -> None:
        rows = []
        for e in edges:
            try:
                rows.append((e.src, Rel(e.rel).value, e.dst, json.dumps(e.props)))
            except ValueError as exc:
                raise InvalidInputError(f"unknown edge type {e.rel!r}") from exc
        if not rows:
            return
        ids = list(dict.fromkeys(i for row in rows for i in (row[0], row[2])))
        with self._write() as (conn, _seq):
            found: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                found.update(r[0] for r in conn.execute(
                    f"SELECT id FROM memories WHERE id IN ({self._marks(chunk)})", chunk))
            missing = [i for i in ids if i not in found]
            if missing:  # no dangling edges (the Neo4j store cannot create them either)
                raise NotFoundError(f"edge endpoints not found: {', '.join(missing[:10])}")
            conn.executemany("INSERT OR IGNORE INTO edges (src, rel, dst, props) VALUES (?, ?, ?, ?)", rows)

    def delete_edges(self, edges: Sequence[Edge]) -> int:
        rows = [(e.src, Rel(e.rel).value, e.dst) for e in edges]
        if not rows:
            return 0
        with self._write() as (conn, _seq):
            before = conn.total_changes
            conn.executemany("DELETE FROM edges WHERE src = ? AND rel = ? AND dst = ?", rows)
            return conn.total_changes - before

    # -- entity graph -------------------------------------------------------------------------------------

    def add_mentions(self, mentions: Mapping[str, Sequence[str]]) -> int:
        pairs = [(m, n) for m, names in mentions.items() for n in dict.fromkeys(names) if n]
        if not pairs:
            return 0
        with self._write() as (conn, _seq):
            cube_of = self._cubes_of(conn, list(mentions))
            missing = [m for m in mentions if m not in cube_of]
            if missing:
                raise NotFoundError(f"memories not found: {', '.join(missing[:10])}")
            conn.executemany("INSERT OR IGNORE INTO entities (key, cube_id, name) VALUES (?, ?, ?)",
                             [(entity_key(cube_of[m], n), cube_of[m], n) for m, n in pairs])
            linked = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO mentions (memory_id, entity) VALUES (?, ?)",
                             [(m, entity_key(cube_of[m], n)) for m, n in pairs])
            return conn.total_changes - linked

    def _cubes_of(self, conn: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found.update(conn.execute(f"SELECT id, cube_id FROM memories WHERE id IN ({self._marks(chunk)})", chunk))
        return found

    @classmethod
    def _drop_mentions(cls, conn: sqlite3.Connection, ids: Sequence[str]) -> int:
        removed, keys = 0, set[str]()
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = cls._marks(chunk)
            keys.update(r[0] for r in conn.execute(f"SELECT entity FROM mentions WHERE memory_id IN ({marks})", chunk))
            removed += conn.execute(f"DELETE FROM mentions WHERE memory_id IN ({marks})", chunk).rowcount
        # Orphans go too: an entity nobody mentions any more must not outlive the memories that named it.
        conn.executemany("DELETE FROM entities WHERE key = ? AND NOT EXISTS (SELECT 1 FROM mentions WHERE entity = ?)",
                         [(k, k) for k in keys])
        return removed

    def delete_mentions(self, memory_ids: Sequence[str]) -> int:
        if not memory_ids:
            return 0
        with self._write() as (conn, _seq):
            return self._drop_mentions(conn, list(dict.fromkeys(memory_ids)))

    def mentions(self, ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            for memory_id, name in self._query(
                f"SELECT m.memory_id, e.name FROM mentions m JOIN entities e ON e.key = m.entity "
                f"WHERE m.memory_id IN ({self._marks(chunk)}) ORDER BY e.name", chunk):
                out.setdefault(memory_id, []).append(name)
        return out

    def entity_search(
        self,
        names: Sequence[str],
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> list[SearchHit]:
        if not names or not cube_ids or k <= 0:
            return []
        states = [MemoryStatus(s).value for s in statuses]
        scores: dict[str, float] = {}
        for cube_id in dict.fromkeys(cube_ids):
            for name in dict.fromkeys(names):
                key = entity_key(cube_id, name)
                rows = self._query(
                    f"SELECT m.memory_id FROM mentions m JOIN memories r ON r.id = m.memory_id "
                    f"WHERE m.entity = ? AND r.status IN ({self._marks(states)}) LIMIT ?",
                    [key, *states, ENTITY_FANOUT + 1],
                )
                if not rows or len(rows) > ENTITY_FANOUT:
                    continue  # unknown, or so common that it tells memories apart no better than chance
                weight = entity_weight(len(rows))
                for (memory_id,) in rows:
                    scores[memory_id] = scores.get(memory_id, 0.0) + weight
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        items = {item.id: item for item in self.get([m for m, _ in best])}
        return [SearchHit(item=items[m], score=s, scores={"entity": s}, ranks={"entity": r})
                for r, (m, s) in enumerate(best) if m in items]

    # -- reads --------------------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    @staticmethod
    def _marks(values: Sequence[Any]) -> str:
        return ",".join("?" * len(values))

    def get(self, ids: Sequence[str], *, cube_ids: Sequence[str] | None = None) -> list[MemoryItem]:
        if not ids:
            return []
        found: dict[str, MemoryItem] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            for (data,) in self._query(f"SELECT data FROM memories WHERE id IN ({self._marks(chunk)})", chunk):
                item = MemoryItem.model_validate_json(data)
                found[item.id] = item
        allowed = set(cube_ids) if cube_ids is not None else None
        return [found[i] for i in ids if i in found and (allowed is None or found[i].cube_id in allowed)]

    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored (normalised) vectors by id: for dedup and MMR without re-embedding."""
        rows = self._query(f"SELECT id, embedding FROM memories WHERE id IN ({self._marks(ids)})", list(ids))
        return {i: np.frombuffer(b, dtype=np.float32) for i, b in rows}

    def vector_search(
        self,
        vector: Sequence[float],
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> list[SearchHit]:
        self._refresh_vectors()
        return self._vector_hits(self._nearest(vector, cube_ids, k, statuses), statuses)

    def _nearest(self, vector: Sequence[float], cube_ids: Sequence[str], k: int,
                 statuses: Sequence[MemoryStatus]) -> list[tuple[float, str]]:
        """(cosine, id) of the k nearest cached vectors, best first. The scan runs outside the lock on a
        snapshot of each cube's arrays (writers grow them by replacing, never by moving rows), so other threads'
        reads and writes go on meanwhile; a status changed during the scan is caught by `_vector_hits`."""
        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm:
            query = query / norm
        allowed = self._status_mask(statuses)
        with self._lock:
            cubes = [(c.matrix, c.status, c.ids, c.size) for c in map(self._cubes.get, dict.fromkeys(cube_ids))
                     if c is not None and c.size]
        scored: list[tuple[float, str]] = []
        for matrix, status, ids, size in cubes:
            sims = matrix[:size] @ query
            sims[~allowed[status[:size] + 1]] = -np.inf
            top = min(k, size)
            idx = np.argpartition(-sims, top - 1)[:top]
            scored.extend((float(sims[i]), ids[i]) for i in idx if np.isfinite(sims[i]))
        scored.sort(key=lambda pair: -pair[0])
        return scored[:k]

    def _vector_hits(self, scored: list[tuple[float, str]], statuses: Sequence[MemoryStatus]) -> list[SearchHit]:
        items = {item.id: item for item in self.get([memory_id for _, memory_id in scored])}
        allowed = {MemoryStatus(s) for s in statuses}
        return [
            SearchHit(item=items[memory_id], score=sim, scores={"vector": sim}, ranks={"vector": rank})
            for rank, (sim, memory_id) in enumerate(scored)
            if memory_id in items and items[memory_id].status in allowed
        ]

    def text_search(
        self,
        query: str,
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> list[SearchHit]:
        self._refresh_vectors()  # its row counts choose how to filter
        return self._text_hits(query, cube_ids, k, statuses)

    def _text_hits(self, query: str, cube_ids: Sequence[str], k: int,
                   statuses: Sequence[MemoryStatus]) -> list[SearchHit]:
        """`text_search` on the vector cache as it is (the caller refreshed it)."""
        terms = query_terms(query)
        if not terms or not cube_ids or not statuses or k <= 0:
            return []
        cubes = list(dict.fromkeys(cube_ids))
        scope, allowed = set(cubes), {MemoryStatus(s).value for s in statuses}
        in_scope, in_cubes, in_table = self._scope_rows(cubes, statuses)
        if not in_scope:
            return []
        # The scope column filters inside the index, at the cost of walking every row its tokens name: worth it
        # when the cubes are a small part of the table, not when they are most of it (one 100k cube: 4x slower).
        # Either way BM25 scores are the same (IDF is over the table; the scope column weighs 0), and rows of
        # other cubes or statuses are dropped below.
        scoped = in_cubes * 2 < in_table
        domain, domain_rows = (_any_of([cube_token(c) for c in cubes]), in_cubes) if scoped else ("", in_table)
        if domain_rows > TEXT_ROW_BUDGET:
            terms = self._within_budget(domain, terms)
        words = f"body:({' OR '.join(quoted(t) for t in terms)})"
        match = f"{domain} AND {words}" if scoped else words
        # Enough rows that k of them are likely in scope; more only when they were not.
        limit = k if domain_rows == in_scope else math.ceil(k * domain_rows / in_scope * 1.25) + 10
        while True:
            rows = self._query(
                "SELECT rowid, -bm25(memories_fts, 1.0, 0.0) FROM memories_fts WHERE memories_fts MATCH ? "
                "ORDER BY bm25(memories_fts, 1.0, 0.0) LIMIT ?",
                [match, limit],
            )
            found = self._query(f"SELECT rowid, cube_id, status FROM memories WHERE rowid IN ({self._marks(rows)})",
                                [r for r, _ in rows]) if rows else []
            wanted = {rowid for rowid, cube, status in found if cube in scope and status in allowed}
            kept = [(rowid, score) for rowid, score in rows if rowid in wanted][:k]
            if len(kept) == k or len(rows) < limit:
                break
            limit *= 4
        data = dict(self._query(f"SELECT rowid, data FROM memories WHERE rowid IN ({self._marks(kept)})",
                                [r for r, _ in kept])) if kept else {}
        # A memory erased between the reads (another thread's hard delete) is simply not a hit.
        kept = [(rowid, score) for rowid, score in kept if rowid in data]
        return [
            SearchHit(item=MemoryItem.model_validate_json(data[rowid]), score=score, scores={"bm25": score},
                      ranks={"bm25": rank})
            for rank, (rowid, score) in enumerate(kept)
        ]

    @staticmethod
    def _status_mask(statuses: Sequence[MemoryStatus]) -> np.ndarray:
        """A lookup table indexed by status code + 1 (code -1 marks a hard-deleted row): True where allowed."""
        allowed = np.zeros(len(_STATUS_CODE) + 1, dtype=bool)
        allowed[[_STATUS_CODE[MemoryStatus(s)] + 1 for s in statuses]] = True
        return allowed

    def _scope_rows(self, cube_ids: Sequence[str], statuses: Sequence[MemoryStatus]) -> tuple[int, int, int]:
        """Rows of these cubes with these statuses, rows of these cubes, rows in the table: counted in the vector
        cache (it holds every row), they decide how a text search filters."""
        allowed = self._status_mask(statuses)
        with self._lock:
            cubes = [self._cubes[c] for c in cube_ids if c in self._cubes]
            in_scope = sum(int(np.count_nonzero(allowed[v.status[: v.size] + 1])) for v in cubes)
            return in_scope, sum(v.live for v in cubes), self._live_rows

    def _within_budget(self, scope: str, terms: list[str]) -> list[str]:
        """Rarest terms first, as many as fit in `TEXT_ROW_BUDGET` rows matched within `scope` (an FTS5 filter on
        the scope column, or "" for the whole table); always at least one.

        BM25 costs one score per matching row; a very common word in a big cube matches tens of thousands
        of rows and adds almost nothing to the ranking (its IDF is near zero). Small cubes keep every term.
        """
        counted = sorted((self._term_rows(scope, t), t) for t in terms)
        kept: list[str] = []
        rows = 0
        for n, term in counted:
            if kept and rows + n > TEXT_ROW_BUDGET:
                continue
            kept.append(term)
            rows += n
        return kept

    def _term_rows(self, scope: str, term: str) -> int:
        """Rows holding `term` within `scope`, cached for `DF_CACHE_SECONDS`."""
        key, now_s = (scope, term), time.monotonic()
        cached = self._df_cache.get(key)
        if cached is not None and now_s - cached[1] < DF_CACHE_SECONDS:
            return cached[0]
        (n,) = self._query("SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?",
                           [f"{scope} AND body:{quoted(term)}" if scope else f"body:{quoted(term)}"])[0]
        if len(self._df_cache) > 50_000:
            self._df_cache.clear()
        self._df_cache[key] = (int(n), now_s)
        return int(n)

    def hybrid_search(
        self,
        vector: Sequence[float],
        query: str,
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> tuple[list[SearchHit], list[SearchHit]]:
        # The vector scan (numpy) and the full-text query (SQLite) both release the GIL: run them side by side.
        self._refresh_vectors()
        scan = self._scan_pool().submit(self._nearest, vector, cube_ids, k, statuses)
        lexical = self._text_hits(query, cube_ids, k, statuses)
        return self._vector_hits(scan.result(), statuses), lexical

    def _scan_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._scans is None:
                self._scans = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hippograph-vector-scan")
            return self._scans

    def recall_round(self, query: RecallQuery) -> RecallRound:
        # In process a call costs no round trip: the separate calls, no neighbours read ahead.
        return recall_round_by_calls(self, query)

    def neighbours(self, ids: Sequence[str], *, cube_ids: Sequence[str], window: int = 1) -> list[MemoryItem]:
        seeds = self.get(ids, cube_ids=cube_ids)
        if not seeds:
            return []
        cubes = list(dict.fromkeys(cube_ids))
        found: list[str] = []
        for seed in seeds:
            if seed.session_id is not None and seed.turn_index is not None:
                found += [r[0] for r in self._query(
                    "SELECT id FROM memories WHERE cube_id = ? AND session_id = ? AND turn_index BETWEEN ? AND ? "
                    "AND status = 'active' ORDER BY turn_index",
                    (seed.cube_id, seed.session_id, seed.turn_index - window, seed.turn_index + window),
                )]
            if seed.parent_id:
                found.append(seed.parent_id)
        seed_ids = [s.id for s in seeds]
        marks = self._marks(seed_ids)
        found += [r[0] for r in self._query(f"SELECT id FROM memories WHERE parent_id IN ({marks})", seed_ids)]
        found += [r[0] for r in self._query(
            f"SELECT src FROM edges WHERE rel = 'PARENT' AND dst IN ({marks}) "
            f"UNION SELECT dst FROM edges WHERE rel = 'PARENT' AND src IN ({marks})", seed_ids * 2)]
        exclude = set(seed_ids)
        unique = [i for i in dict.fromkeys(found) if i not in exclude]
        return [m for m in self.get(unique, cube_ids=cubes) if m.status == MemoryStatus.ACTIVE]

    def edges(self, ids: Sequence[str], *, rel: Rel | None = None, direction: str = "out") -> list[Edge]:
        if direction not in ("out", "in", "both"):
            raise InvalidInputError(f"direction must be out, in or both, not {direction!r}")
        marks, ids = self._marks(ids), list(ids)
        clauses, params = [], []
        if direction in ("out", "both"):
            clauses.append(f"src IN ({marks})")
            params += ids
        if direction in ("in", "both"):
            clauses.append(f"dst IN ({marks})")
            params += ids
        sql = f"SELECT src, rel, dst, props FROM edges WHERE ({' OR '.join(clauses)})"
        if rel is not None:
            sql += " AND rel = ?"
            params.append(Rel(rel).value)
        return [Edge(src=s, rel=Rel(r), dst=d, props=json.loads(p)) for s, r, d, p in self._query(sql, params)]

    def find_by_hash(self, cube_id: str, hashes: Sequence[str]) -> dict[str, str]:
        if not hashes:
            return {}
        rows = self._query(
            f"SELECT content_hash, id FROM memories WHERE cube_id = ? AND status = 'active' "
            f"AND content_hash IN ({self._marks(hashes)})",
            [cube_id, *hashes],
        )
        return dict(rows)

    def list(
        self,
        *,
        cube_ids: Sequence[str],
        limit: int = 100,
        offset: int = 0,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
        session_id: str | None = None,
        memory_type: str | None = None,
    ) -> list[MemoryItem]:
        if not cube_ids:
            return []
        cubes, states = list(dict.fromkeys(cube_ids)), [MemoryStatus(s).value for s in statuses]
        sql = (f"SELECT data FROM memories WHERE cube_id IN ({self._marks(cubes)}) "
               f"AND status IN ({self._marks(states)})")
        params: list[Any] = [*cubes, *states]
        if session_id is not None:
            sql += " AND session_id = ?"
            params.append(session_id)
        if memory_type is not None:
            sql += " AND memory_type = ?"
            params.append(memory_type)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
        params += [max(0, int(limit)), max(0, int(offset))]
        return [MemoryItem.model_validate_json(d) for (d,) in self._query(sql, params)]

    def count(
        self,
        *,
        cube_ids: Sequence[str] | None = None,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> int:
        states = [MemoryStatus(s).value for s in statuses]
        sql, params = f"SELECT count(*) FROM memories WHERE status IN ({self._marks(states)})", list(states)
        if cube_ids is not None:
            if not cube_ids:
                return 0
            sql += f" AND cube_id IN ({self._marks(cube_ids)})"
            params += list(cube_ids)
        return int(self._query(sql, params)[0][0])

    def close(self) -> None:
        if self._scans is not None:  # outside the lock: a scan may be waiting for it to take its snapshot
            self._scans.shutdown(wait=True)
        with self._lock:
            self._conn.close()
