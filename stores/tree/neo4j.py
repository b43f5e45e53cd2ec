"""The Neo4j tree store: the production backend of tree memory (Neo4j 5.26 LTS or newer, Community is enough).

Schema (created idempotently on open; every name below is a constant of this module):
- one label `Memory`; the tenant is the `cube_id` property; uniqueness constraint on `id`;
- range indexes on `cube_id`, `status`, `created_at`, `session_id`, `content_hash`, `parent_id`;
- a vector index (cosine, the store's dimension) on `embedding` (L2-normalised on write);
- a full-text index (English analyzer: stemming, stop words) on `text`, `key`, `tags`;
- edges are relationships typed by `Rel` (`PARENT`, `RELATE_TO`, `SUPERSEDES`, `MERGED_INTO`, `NEXT`), their
  free-form props kept as a JSON string in `props`.

Every query is parameterised: user values (ids, cube ids, text, vectors) only ever travel as parameters.
Writes are `UNWIND` batches inside one managed transaction, so a batch is all-or-nothing even when the server
dies half-way. The driver retries transient failures (`retry_time`), then a `BackendUnavailableError` names
the URI.

Filtered vector search: Neo4j 5.26's vector index cannot pre-filter by tenant, so a naive "ANN top-k, then
`WHERE cube_id IN ...`" returns fewer than k hits when the cube is a small part of the index. We (1) count the
cube's memories (index-backed; big counts cached for `size_cache_s`); (2) when the cube is small (<=
`exact_threshold`, or the ANN would need more candidates than the cube holds) compute exact cosine over that
cube's nodes only (an index seek, never every tenant); (3) otherwise ask the ANN index for
`max(k * oversample, min_candidates) * total / cube_size` candidates (at least `min_fetch`), filter, re-score
them with exact cosine, and widen until k survive or the exact path is cheaper. `evals/bench_neo4j.py`
measures recall and latency.

Kept vectors (before all of that): a cube of up to `cache_cube_rows` memories (`Settings.neo4j_vector_cache_rows`,
default 100k: ~150 MB of 384-d float32 per process) is ranked from a copy of its vectors in this process, by
exact cosine in numpy, and one query returns the cubes' write counters and the best hits' fields (with the
status filter; hybrid search adds the full-text hits to that same query). Every write bumps its cube's counter
(`CubeVersion`) and stamps the memory with the new value (`_v`), so a copy behind the counter reads only the
vectors written since; a new epoch (the cube erased and written again) reads the cube whole.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import neo4j
import numpy as np
from neo4j import exceptions as nx

from hippograph.stores.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from hippograph.stores.models import MemoryItem, MemoryStatus, MemoryType, SearchHit, now
from hippograph.stores.settings import get_settings
from hippograph.stores.text import STOP_WORDS, WORD
from hippograph.stores.tree.base import (
    ENTITY_FANOUT,
    Edge,
    Nearby,
    NeighbourKind,
    NeighbourReadAhead,
    RecallQuery,
    RecallRound,
    Rel,
    entity_key,
    recall_round_by_calls,
)

LABEL = "Memory"
VECTOR_INDEX = "memory_embedding"
FULLTEXT_INDEX = "memory_fulltext"
ID_CONSTRAINT = "memory_id_unique"
RANGE_INDEXES = {
    "memory_cube_id": "cube_id",
    "memory_status": "status",
    "memory_created_at": "created_at",
    "memory_session_id": "session_id",
    "memory_content_hash": "content_hash",
    "memory_parent_id": "parent_id",
    "memory_occurred_at": "occurred_at",
}
#: Adjacent turns of a seed (`neighbours`): an index seek on cube, session and turn range. Without it Neo4j seeks
#: by cube and filters every memory of it (neighbours 8 -> 4 ms p50 at 100 cubes x 500, evals/results/neo4j.md).
TURN_INDEX = "memory_turns"
#: A session's working memory (recall reads it on every search): an index seek on cube, session and type, where
#: the cube index alone would filter every memory of the cube (~150 ms at one 100k cube).
SESSION_TYPE_INDEX = "memory_session_type"
# The planner prefers the one-property session index (a session may span many memories): name the composite.
_SESSION_TYPE_HINT = f"USING INDEX m:{LABEL}(cube_id, session_id, memory_type)"
COUNTER_LABEL = "HippographCounter"
#: One node per cube whose `n` every vector write bumps (in the writing transaction) and whose `epoch` is new
#: whenever the node is (re)created: a process may keep a cube's vectors in memory while both are unchanged.
VERSION_LABEL = "CubeVersion"
VERSION_CONSTRAINT = "cube_version_unique"
_BUMP_VERSIONS = f"""
UNWIND $cubes AS cube
MERGE (v:{VERSION_LABEL} {{cube_id: cube}})
ON CREATE SET v.epoch = randomUUID()
SET v.n = coalesce(v.n, 0) + 1
RETURN cube, v.n AS n
"""
#: Every written memory carries `_v`, its cube's counter value of that write: a process's copy of the cube's
#: vectors at counter n only needs the memories with `_v > n` (an index seek on this composite index).
WRITE_INDEX = "memory_cube_write"
#: The entity graph: `(:Memory)-[:MENTIONS]->(:Entity {key, cube_id, name})`, one Entity per cube and name.
ENTITY_LABEL = "Entity"
ENTITY_CONSTRAINT = "entity_key_unique"
#: Properties stored as JSON strings (Neo4j properties cannot hold maps or lists of maps).
_JSON_FIELDS = ("source_refs", "metadata")
_INTERNAL = ("embedding", "_ord", "_v", "ft_scope")
#: The full-text index also holds each memory's cube as one numeric token (`ft_scope`), so a text search names
#: its cubes inside the Lucene query (`scoped_lucene`) and Lucene scores only their hits, instead of every
#: tenant's matches being scored and then filtered: a search's cost no longer grows with other tenants' data.
#: Above this many cubes the query stays unscoped (Lucene's clause limit is 1,024).
SCOPED_CUBES_MAX = 256
_BATCH = 1000

#: Characters with a meaning in Lucene's query syntax (escaped in `lucene_escape`).
_LUCENE_SPECIAL = re.compile(r'([+\-!(){}\[\]^"~*?:\\/&|])')

T = TypeVar("T")


def lucene_escape(text: str) -> str:
    """Backslash-escape every Lucene query-syntax character of `text`."""
    return _LUCENE_SPECIAL.sub(r"\\\1", text)


#: Lucene's English analyzer drops these words: a query of nothing else matches nothing (and, scoped, would match
#: the whole cube through its cube clause alone).
LUCENE_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of",
    "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
})


def lucene_query(text: str) -> str:
    """Plain text -> a safe Lucene query: its words (lower-cased, so `AND`/`OR`/`NOT` are no operators),
    escaped and OR-ed. Empty when `text` has no words Lucene's English analyzer keeps."""
    kept = [w for w in WORD.findall(text.lower()) if w not in LUCENE_STOP_WORDS]
    words = [w for w in kept if w not in STOP_WORDS] or kept
    unique = list(dict.fromkeys(words))[:64]
    return " ".join(lucene_escape(w) for w in unique)


def scope_token(cube_id: str) -> str:
    """The cube's token in the full-text index: digits only, so no analyzer splits or stems it."""
    return str(int.from_bytes(hashlib.blake2b(cube_id.encode(), digest_size=8).digest(), "big"))


def scoped_lucene(lucene: str, cubes: Sequence[str]) -> str:
    """`lucene` restricted to the cubes inside Lucene. The cube clause has boost 0, so scores are the words'
    BM25 alone (the same as unscoped); a hash collision only lets another cube's hit through to the Cypher filter
    behind it."""
    if not lucene or len(cubes) > SCOPED_CUBES_MAX:
        return lucene
    return f"+ft_scope:({' OR '.join(scope_token(c) for c in cubes)})^0 +({lucene})"


def _to_cos(normalised: float) -> float:
    """Neo4j's cosine scores are (1 + cos) / 2; hits carry the plain cosine."""
    return 2.0 * float(normalised) - 1.0


# --- Cypher (constants only) --------------------------------------------------------------------------------

_UPSERT = f"""
MERGE (c:{COUNTER_LABEL} {{name: 'memory'}})
SET c.n = coalesce(c.n, 0) + size($rows)
WITH c.n - size($rows) AS base
UNWIND range(0, size($rows) - 1) AS i
WITH base + i AS ord, $rows[i] AS row
MERGE (m:{LABEL} {{id: row.props.id}})
ON CREATE SET m._ord = ord
SET m += row.props, m._v = $versions[row.props.cube_id]
WITH m, row WHERE row.embedding IS NOT NULL
CALL db.create.setNodeVectorProperty(m, 'embedding', row.embedding)
RETURN count(m) AS n
"""

_EDGE_MERGE = {
    rel: f"""
UNWIND $rows AS row
MATCH (a:{LABEL} {{id: row.src}})
MATCH (b:{LABEL} {{id: row.dst}})
MERGE (a)-[r:{rel.value}]->(b)
ON CREATE SET r.props = row.props
RETURN count(r) AS n
"""
    for rel in Rel
}

_NODE_MAP = "m {.*, embedding: null, _ord: null, _v: null, ft_scope: null}"
_NODE_FIELDS = f"{_NODE_MAP} AS m"

_MENTIONS_MERGE = f"""
UNWIND $rows AS row
MATCH (m:{LABEL} {{id: row.id}})
UNWIND row.names AS name
MERGE (e:{ENTITY_LABEL} {{key: m.cube_id + '|' + name}})
ON CREATE SET e.cube_id = m.cube_id, e.name = name
MERGE (m)-[:MENTIONS]->(e)
"""
_MENTIONED_KEYS = (
    f"UNWIND $ids AS id MATCH (:{LABEL} {{id: id}})-[:MENTIONS]->(e:{ENTITY_LABEL}) "
    "RETURN collect(DISTINCT e.key) AS keys"
)
_DROP_ORPHANS = (
    f"UNWIND $keys AS key MATCH (e:{ENTITY_LABEL} {{key: key}}) WHERE NOT EXISTS {{ (e)<-[:MENTIONS]-() }} DELETE e"
)
# Rare entities weigh most: 1 / log2(1 + df), df = how many (status-filtered) memories mention the entity.
_ENTITY_ROWS = f"""
UNWIND $keys AS key
MATCH (e:{ENTITY_LABEL} {{key: key}})
CALL (e) {{
    MATCH (e)<-[:MENTIONS]-(m:{LABEL}) WHERE m.status IN $states
    RETURN m LIMIT $cap
}}
WITH e, collect(m) AS ms WHERE 0 < size(ms) <= $fanout
WITH ms, 1.0 / (log(1.0 + size(ms)) / log(2.0)) AS w
UNWIND ms AS m
WITH m, sum(w) AS score
ORDER BY score DESC, m.id LIMIT $ek
"""
_ENTITY_SEARCH = _ENTITY_ROWS + f"RETURN {_NODE_FIELDS}, score"
# A seed `s`'s neighbours `n` of each `NeighbourKind`, with their order within the kind.
_NEAR_OF_SEED = f"""
CALL (s) {{
    MATCH (n:{LABEL})
    WHERE s.session_id IS NOT NULL AND s.turn_index IS NOT NULL
      AND n.session_id = s.session_id AND n.cube_id = s.cube_id
      AND n.turn_index >= s.turn_index - $w AND n.turn_index <= s.turn_index + $w
    RETURN n, {int(NeighbourKind.TURN)} AS kind, n.turn_index AS x
    UNION
    MATCH (n:{LABEL}) WHERE s.parent_id IS NOT NULL AND n.id = s.parent_id
    RETURN n, {int(NeighbourKind.PARENT)} AS kind, 0 AS x
    UNION
    MATCH (n:{LABEL} {{parent_id: s.id}})
    RETURN n, {int(NeighbourKind.CHILD)} AS kind, n.created_at AS x
    UNION
    MATCH (s)-[:PARENT]-(n:{LABEL})
    RETURN n, {int(NeighbourKind.LINKED)} AS kind, n.created_at AS x
}}
"""

# One round trip for a search from the cubes' vectors kept in the process: the write counters (is the copy
# current?) and the fields of the best ranked candidates still in the cubes with a wanted status, in rank order
# (`$ids` is best first); with the full-text hits in the same query for hybrid recall.
_CACHED_PARTS = f"""
CALL () {{
    UNWIND $cubes AS cube OPTIONAL MATCH (v:{VERSION_LABEL} {{cube_id: cube}})
    RETURN collect([cube, v.epoch, v.n]) AS versions
}}
CALL () {{
    UNWIND range(0, size($ids) - 1) AS i
    MATCH (m:{LABEL} {{id: $ids[i]}}) WHERE m.cube_id IN $cubes AND m.status IN $states
    WITH i, m ORDER BY i LIMIT $k
    RETURN collect([i, {_NODE_MAP}]) AS dense
}}
"""
# Full text: Lucene's best `$tlimit` hits only (a top-n collector, ties in index order, instead of sorting every
# match: 39 -> 13 ms p50 at one 100k cube, no difference measured at 30k), then the cube and status filter until
# k pass. `seen` < `$tlimit` means Lucene had no more; else, with fewer than k kept, the caller asks again for 8x
# more. Any limit gives a prefix of the same order, so hybrid and text search agree whatever limits they used.
_TEXT_PART = f"""
CALL () {{
    CALL db.index.fulltext.queryNodes($index, $q, {{limit: $tlimit}}) YIELD node, score
    WITH collect({{node: node, score: score}}) AS raw
    RETURN size(raw) AS seen,
           [r IN raw WHERE r.score > 0 AND r.node.cube_id IN $cubes AND r.node.status IN $states][..$k] AS kept
}}
CALL (kept) {{
    UNWIND kept AS r
    WITH r.node AS m, r.score AS score
    RETURN collect({{m: {_NODE_MAP}, score: score}}) AS lexical
}}
"""
_TEXT_SEARCH = _TEXT_PART + "RETURN seen, lexical"
# Recall's first round (`recall_round`) adds to the same query: the entity signal, the session's working memory
# and the neighbours of the seeds recall will expand.
_ROUND_PART = f"""
CALL () {{
    CALL () {{ {_ENTITY_ROWS} RETURN m, score }}
    RETURN collect({{m: {_NODE_MAP}, score: score}}) AS entity
}}
CALL () {{
    MATCH (m:{LABEL}) {_SESSION_TYPE_HINT}
    WHERE m.cube_id = $wcube AND m.session_id = $wsession AND m.memory_type = $wtype
      AND m.status = 'active'
    WITH m ORDER BY m.created_at DESC, m._ord DESC LIMIT $wlimit
    RETURN collect({_NODE_MAP}) AS working
}}
// The seeds recall will expand: the best `$expand` by their best rank in either list (equal full-text scores
// share a rank), dense order first, as `nodes/retrieve_tree.py` orders them; any other seed it picks is asked for.
CALL (dense, lexical) {{
    UNWIND [k IN range(0, size(dense) - 1) | [dense[k][1].id, k, k]]
         + [j IN range(0, size(lexical) - 1) | [lexical[j].m.id,
            head([t IN range(0, j) WHERE lexical[t].score = lexical[j].score]), size(dense) + j]] AS c
    WITH c[0] AS id, min(c[1]) AS rank, min(c[2]) AS ord
    ORDER BY rank, ord LIMIT $expand
    RETURN collect(id) AS seeds
}}
CALL (seeds) {{
    UNWIND seeds AS sid
    MATCH (s:{LABEL} {{id: sid}})
    {_NEAR_OF_SEED}
    WITH s, n AS m, kind, x WHERE m.cube_id IN $cubes AND m.status = 'active' AND m.id <> s.id
    RETURN collect([s.id, kind, x, {_NODE_MAP}]) AS near
}}
"""


@functools.cache
def _cached_query(text: bool, first_round: bool) -> str:
    """The one query of a search from kept vectors: counters and dense hits, with full text, with the round."""
    parts, columns = [_CACHED_PARTS], ["versions", "dense"]
    if text:
        parts.append(_TEXT_PART)
        columns += ["seen", "lexical"]
    if first_round:
        parts.append(_ROUND_PART if text else "WITH *, [] AS lexical" + _ROUND_PART)
        columns += ["entity", "working", "seeds", "near"]
    return "".join(parts) + "RETURN " + ", ".join(columns)


class _CubeCopy:
    """One cube's vectors kept in this process, current for the cube's write counter (`epoch`, `n`).

    Rows only grow or change in place and `ids` grows after its row is written, so a reader that takes
    `size` first and then `matrix` ranks consistent rows without a lock; writers hold `lock`."""

    def __init__(self, epoch: str, n: int, matrix: np.ndarray, ids: list[str]) -> None:
        self.epoch, self.n = epoch, n
        self.matrix = matrix
        self.ids = ids
        self.rows = {i: r for r, i in enumerate(ids)}
        self.lock = threading.Lock()

    @classmethod
    def of(cls, epoch: str, n: int, dimension: int, rows: Sequence[tuple[str, Sequence[float]]]) -> _CubeCopy:
        matrix = np.empty((len(rows) + len(rows) // 8 + 16, dimension), dtype=np.float32)
        for r, (_, vec) in enumerate(rows):
            matrix[r] = vec
        return cls(epoch, n, matrix, [i for i, _ in rows])

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def version(self) -> tuple[str, int]:
        return self.epoch, self.n

    def put(self, rows: Sequence[tuple[str, Sequence[float]]], n: int) -> None:
        """Add or replace the vectors written up to counter `n` (an updated memory keeps its row)."""
        for mid, vec in rows:
            row = self.rows.get(mid)
            if row is not None:
                self.matrix[row] = vec
                continue
            row = len(self.ids)
            if row == len(self.matrix):  # grow by a quarter: at 100k rows a doubling would waste 150 MB
                grown = np.empty((row + row // 4 + 16, self.matrix.shape[1]), dtype=np.float32)
                grown[:row] = self.matrix[:row]
                self.matrix = grown
            self.matrix[row] = vec
            self.rows[mid] = row
            self.ids.append(mid)
        self.n = n


def _rank(copies: Mapping[str, _CubeCopy], vec: np.ndarray, want: int) -> tuple[list[str], list[float]]:
    """The `want` best ids over the copies by exact cosine (vectors are unit length), best first, ties by id
    (the order of the exact Cypher path), with their cosines."""
    ids: list[str] = []
    scores: list[float] = []
    for copy in copies.values():
        size = copy.size  # before `matrix`: see `_CubeCopy`
        if not size:
            continue
        cos = copy.matrix[:size] @ vec
        take = min(want, size)
        best = np.argpartition(-cos, take - 1)[:take] if take < size else np.arange(size)
        ids.extend(copy.ids[i] for i in best)
        scores.extend(cos[best].tolist())
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:want]
    return [ids[i] for i in order], [scores[i] for i in order]


def _guard(method: Callable[..., T]) -> Callable[..., T]:
    """Turn driver connectivity failures into `BackendUnavailableError` naming the URI."""

    @functools.wraps(method)
    def wrapper(self: Neo4jTreeStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (nx.ServiceUnavailable, nx.SessionExpired, nx.SessionError) as exc:
            raise BackendUnavailableError(f"Neo4j at {self.uri} is unavailable: {exc}") from exc
        except nx.AuthError as exc:
            raise BackendUnavailableError(f"Neo4j at {self.uri} refused the credentials: {exc}") from exc
        except nx.TransientError as exc:
            raise BackendUnavailableError(f"Neo4j at {self.uri} kept failing transiently: {exc}") from exc
        except nx.DriverError as exc:  # closed driver, pool exhausted, incomplete commit ...
            raise BackendUnavailableError(f"Neo4j at {self.uri}: {type(exc).__name__}: {exc}") from exc

    return wrapper


class Neo4jTreeStore:
    """Tree memory on a Neo4j server (`TreeStore` protocol)."""

    def __init__(
        self,
        uri: str,
        *,
        auth: tuple[str, str] | None = ("neo4j", "neo4j"),
        database: str = "neo4j",
        dimension: int,
        retry_time: float = 15.0,
        connection_timeout: float = 5.0,
        exact_threshold: int = 1000,
        oversample: float = 2.0,
        min_candidates: int = 100,
        min_fetch: int = 400,
        size_cache_s: float = 30.0,
        quantization: bool = True,
        rescore_factor: int = 3,
        cache_cube_rows: int | None = None,
        cache_rows: int | None = None,
        driver: neo4j.Driver | None = None,
    ) -> None:
        if not isinstance(dimension, int) or dimension <= 0:
            raise InvalidInputError(f"dimension must be a positive int, not {dimension!r}")
        self.uri = uri
        self.database = database
        self.dimension = dimension
        self.exact_threshold = exact_threshold
        self.oversample = oversample
        self.min_candidates = min_candidates
        self.min_fetch = min_fetch
        self.size_cache_s = size_cache_s
        self._sizes: dict[tuple[str, ...], tuple[int, float]] = {}
        self.quantization = quantization
        self.rescore_factor = rescore_factor
        limit = get_settings().neo4j_vector_cache_rows if cache_cube_rows is None else cache_cube_rows
        self.cache_cube_rows = limit
        """Cubes up to this many memories are ranked from vectors kept in this process (exact float32 cosine with
        numpy; one query then reads the best hits' fields with the status filter); 0 turns the copy off. Default:
        `Settings.neo4j_vector_cache_rows`."""
        self.cache_rows = limit if cache_rows is None else cache_rows
        """Most vectors kept in memory over all cubes (least recently used cube dropped first)."""
        self._vcache: OrderedDict[str, _CubeCopy] = OrderedDict()
        self._vcache_lock = threading.Lock()
        """The ANN path reads the vectors of the best `rescore_factor * k` (at least 30) in-cube candidates by
        the index's score and ranks those by exact cosine (0: every candidate, the slower former behaviour)."""
        self.last_plan: dict[str, Any] = {}
        """How the last vector search ran (exact / ann + fetch size): for benchmarks and tests."""
        try:
            self._driver = driver or neo4j.GraphDatabase.driver(
                uri,
                auth=auth,
                max_transaction_retry_time=retry_time,
                connection_timeout=connection_timeout,
                connection_acquisition_timeout=max(connection_timeout * 2, 10.0),
                liveness_check_timeout=0,
                notifications_min_severity="OFF",
            )
        except (ValueError, nx.ConfigurationError) as exc:
            raise InvalidInputError(f"invalid Neo4j URI {uri!r}: {exc}") from exc
        try:
            self._driver.verify_connectivity()
        except Exception as exc:
            self._driver.close()
            if isinstance(exc, nx.AuthError):
                raise BackendUnavailableError(f"Neo4j at {uri} refused the credentials: {exc}") from exc
            raise BackendUnavailableError(f"Neo4j at {uri} is unreachable: {exc}") from exc
        self._ensure_schema_guarded()

    # -- plumbing -----------------------------------------------------------------------------------------

    @contextmanager
    def _session(self, access: str = neo4j.WRITE_ACCESS) -> Iterator[neo4j.Session]:
        with self._driver.session(database=self.database, default_access_mode=access) as session:
            yield session

    def _read(self, fn: Callable[[neo4j.ManagedTransaction], T]) -> T:
        """Run `fn`'s queries as auto-commit reads: one round trip each (a managed transaction adds BEGIN and
        COMMIT, a third of a search's time on a local server). Reads are idempotent, so a transient failure
        runs `fn` again in a managed transaction, which retries with back-off."""
        try:
            with self._session(neo4j.READ_ACCESS) as s:
                # A session runs queries like a transaction does (`run(query, params)`), each in its own.
                return fn(cast(neo4j.ManagedTransaction, s))
        except (nx.TransientError, nx.SessionExpired, nx.ServiceUnavailable):
            with self._session(neo4j.READ_ACCESS) as s:
                return s.execute_read(fn)

    def _write(self, fn: Callable[[neo4j.ManagedTransaction], T]) -> T:
        with self._session() as s:
            return s.execute_write(fn)

    def _rows(self, query: str, **params: Any) -> list[dict[str, Any]]:
        def work(tx: neo4j.ManagedTransaction) -> list[dict[str, Any]]:
            return [r.data() for r in tx.run(query, params)]

        return self._read(work)

    @_guard
    def _ensure_schema_guarded(self) -> None:
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        with self._session() as s:
            s.run(f"CREATE CONSTRAINT {ID_CONSTRAINT} IF NOT EXISTS FOR (m:{LABEL}) REQUIRE m.id IS UNIQUE").consume()
            s.run(f"CREATE CONSTRAINT {ENTITY_CONSTRAINT} IF NOT EXISTS FOR (e:{ENTITY_LABEL}) "
                  "REQUIRE e.key IS UNIQUE").consume()
            s.run(f"CREATE CONSTRAINT {VERSION_CONSTRAINT} IF NOT EXISTS FOR (v:{VERSION_LABEL}) "
                  "REQUIRE v.cube_id IS UNIQUE").consume()
            for name, prop in RANGE_INDEXES.items():
                s.run(f"CREATE INDEX {name} IF NOT EXISTS FOR (m:{LABEL}) ON (m.{prop})").consume()
            s.run(f"CREATE INDEX {WRITE_INDEX} IF NOT EXISTS FOR (m:{LABEL}) ON (m.cube_id, m._v)").consume()
            s.run(f"CREATE INDEX {TURN_INDEX} IF NOT EXISTS FOR (m:{LABEL}) "
                  "ON (m.cube_id, m.session_id, m.turn_index)").consume()
            s.run(f"CREATE INDEX {SESSION_TYPE_INDEX} IF NOT EXISTS FOR (m:{LABEL}) "
                  "ON (m.cube_id, m.session_id, m.memory_type)").consume()
            existing = s.run(
                "SHOW INDEXES YIELD name, options WHERE name = $name RETURN options", name=VECTOR_INDEX
            ).single()
            if existing is not None:
                have = int(existing["options"]["indexConfig"]["vector.dimensions"])
                if have != self.dimension:
                    used = s.run(f"MATCH (m:{LABEL}) WHERE m.embedding IS NOT NULL RETURN count(m) AS n").single()
                    if used and used["n"]:
                        raise InvalidInputError(
                            f"Neo4j at {self.uri} holds {used['n']} memories with {have}-dimensional vectors; "
                            f"this store was opened with dimension {self.dimension} (use another database or "
                            "re-embed)"
                        )
                    s.run(f"DROP INDEX {VECTOR_INDEX}").consume()
            s.run(
                f"CREATE VECTOR INDEX {VECTOR_INDEX} IF NOT EXISTS FOR (m:{LABEL}) ON (m.embedding) "
                "OPTIONS {indexConfig: {`vector.dimensions`: $dim, `vector.similarity_function`: 'cosine', "
                "`vector.quantization.enabled`: $quant}}",
                dim=self.dimension,
                quant=self.quantization,
            ).consume()
            self._migrate_fulltext(s)
            s.run(
                f"CREATE FULLTEXT INDEX {FULLTEXT_INDEX} IF NOT EXISTS FOR (m:{LABEL}) "
                "ON EACH [m.text, m.key, m.tags, m.ft_scope] OPTIONS {indexConfig: {`fulltext.analyzer`: 'english'}}"
            ).consume()
            s.run("CALL db.awaitIndexes(300)").consume()

    @staticmethod
    def _migrate_fulltext(s: neo4j.Session) -> None:
        """A database written before `ft_scope` existed: give every memory its cube token, then drop the old
        full-text index (the caller creates the new one, which Neo4j fills in the background)."""
        old = s.run("SHOW INDEXES YIELD name, properties WHERE name = $name RETURN properties",
                    name=FULLTEXT_INDEX).single()
        if old is None or "ft_scope" in old["properties"]:
            return
        cubes = [r["c"] for r in s.run(f"MATCH (m:{LABEL}) WHERE m.ft_scope IS NULL RETURN DISTINCT m.cube_id AS c")]
        for cube in cubes:
            while True:
                rec = s.run(f"MATCH (m:{LABEL} {{cube_id: $cube}}) WHERE m.ft_scope IS NULL WITH m LIMIT 10000 "
                            "SET m.ft_scope = $token RETURN count(m) AS n", cube=cube, token=scope_token(cube)).single()
                if not rec or not rec["n"]:
                    break
        s.run(f"DROP INDEX {FULLTEXT_INDEX}").consume()

    # -- conversions --------------------------------------------------------------------------------------

    def _vector(self, values: Sequence[float] | None, what: str) -> list[float]:
        if values is None:
            raise InvalidInputError(f"{what} has no embedding")
        try:
            vec = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{what}: embedding is not a list of numbers") from exc
        if vec.shape != (self.dimension,):
            raise InvalidInputError(f"{what}: embedding has {vec.size} dimensions, the store holds {self.dimension}")
        if not np.all(np.isfinite(vec)):
            raise InvalidInputError(f"{what}: embedding contains NaN or infinity")
        norm = float(np.linalg.norm(vec))
        return cast(list[float], (vec / norm if norm else vec).tolist())

    @staticmethod
    def _props(item: MemoryItem) -> dict[str, Any]:
        data = item.model_dump(mode="json", exclude={"embedding"})
        props: dict[str, Any] = {}
        for key, value in data.items():
            if key in _JSON_FIELDS:
                props[key] = json.dumps(value, ensure_ascii=False)
            else:
                props[key] = value
        props["ft_scope"] = scope_token(item.cube_id)
        return props

    def _row(self, item: MemoryItem, *, require_vector: bool = True) -> dict[str, Any]:
        emb = None
        if item.embedding is not None or require_vector:
            emb = self._vector(item.embedding, f"memory {item.id}")
            if not any(emb):
                # A zero vector (document/section nodes) has no direction: cosine is undefined and Neo4j rejects
                # it, so the node stays out of dense search (as in the embedded store, where it scores 0).
                emb = None
        return {"props": self._props(item), "embedding": emb}

    @staticmethod
    def _item(props: dict[str, Any]) -> MemoryItem:
        data = {k: v for k, v in props.items() if k not in _INTERNAL and v is not None}
        for key in _JSON_FIELDS:
            if isinstance(data.get(key), str):
                data[key] = json.loads(data[key])
        return MemoryItem.model_validate(data)

    @staticmethod
    def _states(statuses: Sequence[MemoryStatus]) -> list[str]:
        return [MemoryStatus(s).value for s in statuses]

    # -- writes -------------------------------------------------------------------------------------------

    @staticmethod
    def _upsert(tx: neo4j.ManagedTransaction, rows: list[dict[str, Any]]) -> None:
        # Every node and vector write passes here: the cubes' write counters move first (their nodes stay
        # locked until commit, in sorted order), so a reader that sees counter n also sees every `_v <= n`.
        cubes = sorted({r["props"]["cube_id"] for r in rows})
        versions = {r["cube"]: r["n"] for r in tx.run(_BUMP_VERSIONS, cubes=cubes)}
        for start in range(0, len(rows), _BATCH):
            tx.run(_UPSERT, rows=rows[start : start + _BATCH], versions=versions).consume()

    @_guard
    def add(self, items: Sequence[MemoryItem]) -> list[str]:
        rows = [self._row(item) for item in items]  # validate every item before writing any
        if rows:
            self._write(lambda tx: self._upsert(tx, rows))
        return [item.id for item in items]

    @_guard
    def update(self, item: MemoryItem) -> None:
        item.updated_at = now()
        row = self._row(item, require_vector=False)

        def work(tx: neo4j.ManagedTransaction) -> None:
            found = tx.run(f"MATCH (m:{LABEL} {{id: $id}}) RETURN count(m) AS n", id=item.id).single()
            if not found or not found["n"]:
                raise NotFoundError(f"memory {item.id} not found")
            self._upsert(tx, [row])

        self._write(work)

    @_guard
    def delete(self, ids: Sequence[str], *, hard: bool = False) -> int:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return 0
        if hard:
            query = f"UNWIND $ids AS id MATCH (m:{LABEL} {{id: id}}) DETACH DELETE m RETURN count(*) AS n"
        else:
            query = (
                f"UNWIND $ids AS id MATCH (m:{LABEL} {{id: id}}) WHERE m.status <> 'deleted' "
                "SET m.status = 'deleted', m.updated_at = $now, m.valid_to = coalesce(m.valid_to, $now) "
                "RETURN count(*) AS n"
            )

        def work(tx: neo4j.ManagedTransaction) -> int:
            keys = self._mentioned_keys(tx, ids) if hard else []
            rec = tx.run(query, ids=ids, now=now()).single()
            if keys:  # DETACH DELETE took the MENTIONS edges; entities nobody mentions any more go too
                tx.run(_DROP_ORPHANS, keys=keys).consume()
            return int(rec["n"]) if rec else 0

        return self._write(work)

    def scrub(self) -> None:
        """Nothing to do from a client: Neo4j manages its store files (deleted records are gone from every
        query at once; their space is reused by the database)."""

    @_guard
    def erase_cube(self, cube_id: str) -> int:
        """Hard-delete every memory and entity of a cube (in batches, so a big cube never needs one huge tx)."""
        def batch(tx: neo4j.ManagedTransaction) -> int:
            rec = tx.run(f"MATCH (m:{LABEL} {{cube_id: $cube}}) WITH m LIMIT 5000 DETACH DELETE m "
                         "RETURN count(*) AS n", cube=cube_id).single()
            return int(rec["n"]) if rec else 0

        erased = 0
        while deleted := self._write(batch):
            erased += deleted
        self._write(lambda tx: tx.run(f"MATCH (e:{ENTITY_LABEL} {{cube_id: $cube}}) DETACH DELETE e",
                                      cube=cube_id).consume())
        # Its write counter goes too: every process's in-memory copy of the cube's vectors is then stale.
        self._write(lambda tx: tx.run(f"MATCH (v:{VERSION_LABEL} {{cube_id: $cube}}) DELETE v",
                                      cube=cube_id).consume())
        with self._vcache_lock:
            self._vcache.pop(cube_id, None)
        return erased

    @staticmethod
    def _mentioned_keys(tx: neo4j.ManagedTransaction, ids: list[str]) -> list[str]:
        rec = tx.run(_MENTIONED_KEYS, ids=ids).single()
        return list(rec["keys"]) if rec else []

    # -- entity graph -------------------------------------------------------------------------------------

    @_guard
    def add_mentions(self, mentions: Mapping[str, Sequence[str]]) -> int:
        rows = [{"id": m, "names": list(dict.fromkeys(n for n in names if n))} for m, names in mentions.items()]
        rows = [r for r in rows if r["names"]]
        if not rows:
            return 0

        def work(tx: neo4j.ManagedTransaction) -> int:
            rec = tx.run(
                f"UNWIND $ids AS id OPTIONAL MATCH (m:{LABEL} {{id: id}}) WITH id, m WHERE m IS NULL "
                "RETURN collect(id) AS missing",
                ids=list(mentions),
            ).single()
            missing = rec["missing"] if rec else []
            if missing:
                raise NotFoundError(f"memories not found: {', '.join(missing[:10])}")
            created = 0
            for start in range(0, len(rows), _BATCH):
                summary = tx.run(_MENTIONS_MERGE, rows=rows[start : start + _BATCH]).consume()
                created += summary.counters.relationships_created
            return created

        return self._write(work)

    @_guard
    def mentions(self, ids: Sequence[str]) -> dict[str, list[str]]:
        if not ids:
            return {}
        rows = self._rows(
            f"UNWIND $ids AS id MATCH (m:{LABEL} {{id: id}})-[:MENTIONS]->(e:{ENTITY_LABEL}) "
            "RETURN m.id AS id, e.name AS name ORDER BY name",
            ids=list(dict.fromkeys(ids)),
        )
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["id"], []).append(r["name"])
        return out

    @_guard
    def delete_mentions(self, memory_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return 0

        def work(tx: neo4j.ManagedTransaction) -> int:
            keys = self._mentioned_keys(tx, ids)
            summary = tx.run(
                f"UNWIND $ids AS id MATCH (:{LABEL} {{id: id}})-[r:MENTIONS]->(:{ENTITY_LABEL}) DELETE r", ids=ids
            ).consume()
            if keys:
                tx.run(_DROP_ORPHANS, keys=keys).consume()
            return int(summary.counters.relationships_deleted)

        return self._write(work)

    @_guard
    def entity_search(
        self,
        names: Sequence[str],
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> list[SearchHit]:
        keys = [entity_key(c, n) for c in dict.fromkeys(cube_ids) for n in dict.fromkeys(names)]
        if not keys or k <= 0:
            return []
        rows = self._rows(_ENTITY_SEARCH, keys=keys, states=self._states(statuses), cap=ENTITY_FANOUT + 1,
                          fanout=ENTITY_FANOUT, ek=int(k))
        return self._hits(rows, "entity", float)

    @_guard
    def supersede(self, old_id: str, new_item: MemoryItem) -> str:
        row = self._row(new_item)

        def work(tx: neo4j.ManagedTransaction) -> None:
            found = tx.run(f"MATCH (m:{LABEL} {{id: $id}}) RETURN count(m) AS n", id=old_id).single()
            if not found or not found["n"]:
                raise NotFoundError(f"memory {old_id} not found")
            self._upsert(tx, [row])
            ts = now()
            tx.run(
                f"MATCH (old:{LABEL} {{id: $old}}) MATCH (new:{LABEL} {{id: $new}}) "
                "SET old.status = 'superseded', old.updated_at = $now, old.valid_to = $now "
                "MERGE (new)-[r:SUPERSEDES]->(old) ON CREATE SET r.props = '{}'",
                old=old_id,
                new=new_item.id,
                now=ts,
            ).consume()

        self._write(work)
        return new_item.id

    @_guard
    def add_edges(self, edges: Sequence[Edge]) -> None:
        by_rel: dict[Rel, list[dict[str, Any]]] = {}
        for e in edges:
            try:
                rel = Rel(e.rel)
            except ValueError as exc:
                raise InvalidInputError(f"unknown edge type {e.rel!r}") from exc
            by_rel.setdefault(rel, []).append({"src": e.src, "dst": e.dst, "props": json.dumps(e.props)})
        if not by_rel:
            return
        ids = list(dict.fromkeys(i for rows in by_rel.values() for r in rows for i in (r["src"], r["dst"])))

        def work(tx: neo4j.ManagedTransaction) -> None:
            rec = tx.run(
                f"UNWIND $ids AS id OPTIONAL MATCH (m:{LABEL} {{id: id}}) WITH id, m WHERE m IS NULL "
                "RETURN collect(id) AS missing",
                ids=ids,
            ).single()
            missing = rec["missing"] if rec else []
            if missing:
                raise NotFoundError(f"edge endpoints not found: {', '.join(missing[:10])}")
            for rel, rows in by_rel.items():
                for start in range(0, len(rows), _BATCH):
                    tx.run(_EDGE_MERGE[rel], rows=rows[start : start + _BATCH]).consume()

        self._write(work)

    @_guard
    def delete_edges(self, edges: Sequence[Edge]) -> int:
        by_rel: dict[Rel, list[dict[str, str]]] = {}
        for e in edges:
            by_rel.setdefault(Rel(e.rel), []).append({"src": e.src, "dst": e.dst})

        def work(tx: neo4j.ManagedTransaction) -> int:
            removed = 0
            for rel, rows in by_rel.items():  # edge types cannot be parameters: they come from the Rel enum
                rec = tx.run(f"UNWIND $rows AS row MATCH (:{LABEL} {{id: row.src}})-[r:{rel.value}]->"
                             f"(:{LABEL} {{id: row.dst}}) DELETE r RETURN count(r) AS n", rows=rows).single()
                removed += int(rec["n"]) if rec else 0
            return removed

        return self._write(work) if by_rel else 0

    # -- reads --------------------------------------------------------------------------------------------

    @_guard
    def get(self, ids: Sequence[str], *, cube_ids: Sequence[str] | None = None) -> list[MemoryItem]:
        if not ids:
            return []
        rows = self._rows(
            f"UNWIND $ids AS id MATCH (m:{LABEL} {{id: id}}) "
            f"WHERE $cubes IS NULL OR m.cube_id IN $cubes RETURN {_NODE_FIELDS}",
            ids=list(dict.fromkeys(ids)),
            cubes=list(cube_ids) if cube_ids is not None else None,
        )
        found = {r["m"]["id"]: self._item(r["m"]) for r in rows}
        return [found[i] for i in ids if i in found]

    @_guard
    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored (normalised) vectors by id: for dedup and MMR without re-embedding."""
        rows = self._rows(
            f"UNWIND $ids AS id MATCH (m:{LABEL} {{id: id}}) RETURN m.id AS id, m.embedding AS e", ids=list(ids)
        )
        return {r["id"]: np.asarray(r["e"], dtype=np.float32) for r in rows if r["e"] is not None}

    def _hits(self, rows: list[dict[str, Any]], signal: str, convert: Callable[[float], float]) -> list[SearchHit]:
        hits = []
        for rank, r in enumerate(rows):
            score = convert(r["score"])
            hits.append(SearchHit(item=self._item(r["m"]), score=score, scores={signal: score}, ranks={signal: rank}))
        return hits

    _EXACT = (
        f"MATCH (m:{LABEL}) WHERE m.cube_id IN $cubes AND m.status IN $states AND m.embedding IS NOT NULL "
        "WITH m, vector.similarity.cosine(m.embedding, $vec) AS score "
        f"ORDER BY score DESC, m.id LIMIT $k RETURN {_NODE_FIELDS}, score"
    )
    # The index's own (quantized) score ranks the in-cube candidates; only the best `$rescore` of them have
    # their vectors read for the exact cosine (reading every candidate's vector was most of the query time).
    _ANN = (
        "CALL db.index.vector.queryNodes($index, $fetch, $vec) YIELD node AS m, score AS approx "
        "WHERE m.cube_id IN $cubes AND m.status IN $states "
        "WITH m ORDER BY approx DESC LIMIT $rescore "
        "WITH m, vector.similarity.cosine(m.embedding, $vec) AS score "
        f"ORDER BY score DESC, m.id LIMIT $k RETURN {_NODE_FIELDS}, score"
    )
    _TOTAL = f"MATCH (m:{LABEL}) RETURN count(m) AS total"
    _VERSIONS = (f"UNWIND $cubes AS cube OPTIONAL MATCH (v:{VERSION_LABEL} {{cube_id: cube}}) "
                 "RETURN cube, v.epoch AS epoch, v.n AS n")
    _CUBE_VECTORS = (f"MATCH (m:{LABEL} {{cube_id: $cube}}) WHERE m.embedding IS NOT NULL "
                     "RETURN m.id AS id, m.embedding AS e")
    _CUBE_WRITES = (f"MATCH (m:{LABEL}) WHERE m.cube_id = $cube AND m._v > $since AND m.embedding IS NOT NULL "
                    "RETURN m.id AS id, m.embedding AS e")

    def _cached_search(
        self, tx: neo4j.ManagedTransaction, params: dict[str, Any], lucene: str = "",
        first_round: dict[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any] | None] | None:
        """Top-k rows ranked from this process's copy of the cubes' vectors, the full-text rows when `lucene`
        is given and the rest of recall's first round when `first_round` holds its parameters (the record's
        `entity`, `working`, `seeds` and `near`); None when a cube is too big to keep (the caller's ANN path
        answers).

        Steady state is one query: it returns the cubes' write counters and the fields of the best candidates that
        are still in the cubes with the wanted status (so deleted or archived memories never come back). If a
        counter moved since the copy was made, the copy reads the vectors written since and ranks again. Fewer
        than k survivors widen the candidates (x4) up to the whole cube: the answer is the exact top-k."""
        if self.cache_cube_rows <= 0:
            return None
        cubes, k = params["cubes"], params["k"]
        copies = self._held_copies(cubes)
        if copies is None:
            copies = self._refresh_copies(tx, cubes, self._read_versions(tx, cubes))
            if copies is None:
                return None
        query_vec = np.asarray(params["vec"], dtype=np.float32)
        total = sum(c.size for c in copies.values())
        want = min(total, max(k * max(self.rescore_factor, 1), 30))
        lexical: list[dict[str, Any]] | None = None
        tlimit = self._text_limit(cubes, k, size=total, tx=tx) if lucene else 0
        text_pending, round_pending, round_rec = bool(lucene), first_round is not None, None
        for _ in range(16):
            seen = {c: copy.version for c, copy in copies.items()}
            ids, scores = _rank(copies, query_vec, want)
            with_text, with_round = text_pending, round_pending
            text_pending = round_pending = False
            rec = tx.run(_cached_query(with_text, with_round), ids=ids, cubes=cubes, states=params["states"], k=k,
                         index=FULLTEXT_INDEX, q=lucene, tlimit=tlimit,
                         **(first_round if with_round and first_round else {})).single()
            if rec is None:
                return None
            if with_text:
                lexical = self._text_rest(tx, rec, lucene, cubes, params["states"], k, tlimit)
            if with_round:
                round_rec = {key: rec[key] for key in ("entity", "working", "seeds", "near")}
            versions = {cube: (epoch or "", n or 0) for cube, epoch, n in rec["versions"]}
            if versions != seen:  # written since the copy was made (by any process): catch up, rank again
                refreshed = self._refresh_copies(tx, cubes, versions)
                if refreshed is None:
                    return None
                copies, total = refreshed, sum(c.size for c in refreshed.values())
                want = min(total, max(want, 30))
                continue
            # Neo4j's cosine scale, (1 + cos) / 2, like the index's scores: `_hits` turns it back into the cosine
            dense = [{"m": m, "score": (1.0 + scores[i]) / 2.0} for i, m in rec["dense"]]
            if len(dense) >= k or want >= total:
                self.last_plan = {"path": "cache", "cube_size": total, "candidates": want}
                return dense, lexical, round_rec
            want = min(total, want * 4)  # most of the best are deleted or archived: look further down
        return None

    def _text_rows(self, tx: neo4j.ManagedTransaction, lucene: str, cubes: list[str], states: list[str], k: int,
                   tlimit: int) -> list[dict[str, Any]]:
        """Top-k full-text rows in the cubes, asking Lucene for `tlimit` hits, then 8x more while the cut may
        have dropped some."""
        rec = tx.run(_TEXT_SEARCH, index=FULLTEXT_INDEX, q=lucene, cubes=cubes, states=states, k=k,
                     tlimit=tlimit).single()
        return self._text_rest(tx, rec, lucene, cubes, states, k, tlimit)

    def _text_rest(self, tx: neo4j.ManagedTransaction, rec: neo4j.Record | None, lucene: str, cubes: list[str],
                   states: list[str], k: int, tlimit: int) -> list[dict[str, Any]]:
        rows = list(rec["lexical"]) if rec is not None else []
        if len(rows) >= k or rec is None or rec["seen"] < tlimit:  # enough, or Lucene had no more
            return rows
        if tlimit >= self._index_total(tx, fresh=True):  # a count from the counts store
            return rows
        return self._text_rows(tx, lucene, cubes, states, k, tlimit * 8)  # the cut may have dropped some

    def _text_limit(self, cubes: list[str], k: int, *, size: int = 0,
                    tx: neo4j.ManagedTransaction | None = None) -> int:
        """Full-text hits to ask for. Scoped to the cubes inside Lucene: 2k (the status filter may drop some).
        Unscoped: ~4k in these cubes if hits spread like memories, from sizes known without a query (kept vectors,
        cached counts); else 4k (widened when the cubes are a small part)."""
        if len(cubes) <= SCOPED_CUBES_MAX:
            return 2 * k
        if size and tx is not None:
            return max(4 * k, math.ceil(4 * k * self._index_total(tx) / size))
        with self._vcache_lock:
            held = [self._vcache[c].size for c in cubes if c in self._vcache]
        size = sum(held) if len(held) == len(cubes) else self._sizes.get(tuple(sorted(cubes)), (0, 0.0))[0]
        total = self._sizes.get(("\x00total",), (0, 0.0))[0]
        return max(4 * k, math.ceil(4 * k * total / size)) if size and total else 4 * k

    def _read_versions(self, tx: neo4j.ManagedTransaction, cubes: list[str]) -> dict[str, tuple[str, int]]:
        return {r["cube"]: (r["epoch"] or "", r["n"] or 0) for r in tx.run(self._VERSIONS, cubes=cubes)}

    def _held_copies(self, cubes: list[str]) -> dict[str, _CubeCopy] | None:
        """The copies of every cube if this process holds them all (no query), else None."""
        with self._vcache_lock:
            copies = {c: self._vcache.get(c) for c in cubes}
            for c in cubes:
                if c in self._vcache:
                    self._vcache.move_to_end(c)
        if any(copy is None for copy in copies.values()):
            return None
        return cast(dict[str, _CubeCopy], copies)

    def _refresh_copies(
        self, tx: neo4j.ManagedTransaction, cubes: list[str], versions: Mapping[str, tuple[str, int]]
    ) -> dict[str, _CubeCopy] | None:
        """Copies of `cubes` brought to `versions`: unchanged, the vectors written since (same epoch), or read
        whole (new epoch: first use, or the cube was erased and written again). None if a cube is too big."""
        out: dict[str, _CubeCopy] = {}
        for cube in cubes:
            epoch, n = versions.get(cube, ("", 0))
            with self._vcache_lock:
                copy = self._vcache.get(cube)
                lock = copy.lock if copy is not None else threading.Lock()
            with lock:
                if copy is None or copy.epoch != epoch or n < copy.n:
                    if self._cube_size(tx, [cube]) > self.cache_cube_rows:
                        return None
                    copy = _CubeCopy.of(epoch, n, self.dimension, self._pairs(tx, self._CUBE_VECTORS, cube=cube))
                elif n > copy.n:
                    written = self._pairs(tx, self._CUBE_WRITES, cube=cube, since=copy.n)
                    if written:
                        copy.put(written, n)
                    else:  # a write without `_v` (an older version of this store), or gone since: read it whole
                        copy = _CubeCopy.of(epoch, n, self.dimension, self._pairs(tx, self._CUBE_VECTORS, cube=cube))
            if copy.size > self.cache_cube_rows:
                with self._vcache_lock:
                    self._vcache.pop(cube, None)
                return None
            self._remember(cube, copy)
            out[cube] = copy
        return out

    @staticmethod
    def _pairs(tx: neo4j.ManagedTransaction, query: str, **params: Any) -> list[tuple[str, Sequence[float]]]:
        return [(r["id"], r["e"]) for r in tx.run(query, params)]

    def _remember(self, cube: str, copy: _CubeCopy) -> None:
        with self._vcache_lock:
            self._vcache[cube] = copy
            self._vcache.move_to_end(cube)
            while sum(c.size for c in self._vcache.values()) > self.cache_rows and len(self._vcache) > 1:
                self._vcache.popitem(last=False)

    _CUBE_SIZE = f"MATCH (m:{LABEL}) WHERE m.cube_id IN $cubes WITH m LIMIT $cap RETURN count(m) AS n"

    def _rescore(self, k: int, fetch: int) -> int:
        """How many in-cube ANN candidates get the exact cosine (`rescore_factor` 0: every candidate)."""
        return fetch if self.rescore_factor <= 0 else max(k * self.rescore_factor, 30)

    def _index_total(self, tx: neo4j.ManagedTransaction, *, fresh: bool = False) -> int:
        """How many memories the index holds (sizes the ANN candidate count only), cached like big cube sizes."""
        cached = self._sizes.get(("\x00total",))
        if not fresh and cached is not None and time.monotonic() - cached[1] < self.size_cache_s:
            return cached[0]
        rec = tx.run(self._TOTAL).single()
        total = int(rec["total"]) if rec else 0
        self._sizes[("\x00total",)] = (total, time.monotonic())
        return total

    def _cube_size(self, tx: neo4j.ManagedTransaction, cubes: list[str]) -> int:
        """How many memories the cubes hold: exact when small, else an estimate cached for `size_cache_s`.

        Only the search plan depends on it (exact vs ANN, ANN candidate count); results never do, since the
        ANN path widens until k hits survive the filter. Counting a big cube on every query would cost more
        than the search itself, so a count above `exact_threshold` is reused for a while."""
        key = tuple(sorted(cubes))
        cached = self._sizes.get(key)
        if cached is not None and time.monotonic() - cached[1] < self.size_cache_s:
            return cached[0]
        rec = tx.run(self._CUBE_SIZE, cubes=cubes, cap=self.exact_threshold + 1).single()
        size = int(rec["n"]) if rec else 0
        if size > self.exact_threshold:
            rec = tx.run(self._CUBE_SIZE, cubes=cubes, cap=2**62).single()
            size = int(rec["n"]) if rec else size
            if len(self._sizes) > 10_000:
                self._sizes.clear()
            self._sizes[key] = (size, time.monotonic())
        return size

    def _vector_rows(self, tx: neo4j.ManagedTransaction, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Top-k rows of the filtered vector search inside `tx` (kept vectors, exact or ANN: see module doc)."""
        self.last_plan = {}
        cached = self._cached_search(tx, params)
        return cached[0] if cached is not None else self._index_rows(tx, params)

    def _index_rows(self, tx: neo4j.ManagedTransaction, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Top-k rows ranked in Neo4j: exact Cypher for small cubes, else the oversampled vector index."""
        cubes, k = params["cubes"], params["k"]
        size = self._cube_size(tx, cubes)
        total = max(self._index_total(tx), size)
        if size == 0:
            return []
        # Enough index candidates that ~max(k*oversample, min_candidates) of them fall in the cubes, and at
        # least `min_fetch` (the HNSW search breadth: recall on a big index needs it).
        in_cube = max(k * self.oversample, self.min_candidates)
        fetch = max(math.ceil(in_cube * total / size), self.min_fetch, 2 * k)
        if size <= self.exact_threshold or fetch >= size:
            self.last_plan = {"path": "exact", "cube_size": size}
            return [r.data() for r in tx.run(self._EXACT, params)]
        rounds = 0
        while True:
            rounds += 1
            rows = [r.data() for r in tx.run(self._ANN, params, index=VECTOR_INDEX, fetch=min(fetch, total),
                                             rescore=self._rescore(k, fetch))]
            if len(rows) < k and fetch >= total:  # the cached total may be stale: count again before giving up
                total = max(self._index_total(tx, fresh=True), size)
            if len(rows) >= k or fetch >= total:
                self.last_plan = {"path": "ann", "fetch": fetch, "rounds": rounds, "total": total}
                return rows
            # Fewer than k survived the filter (e.g. most of the cube is deleted): widen, or go exact.
            fetch *= 4
            if fetch >= size * 4 or fetch > 50_000:
                self.last_plan = {"path": "exact-fallback", "rounds": rounds, "total": total}
                return [r.data() for r in tx.run(self._EXACT, params)]

    @_guard
    def vector_search(
        self,
        vector: Sequence[float],
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> list[SearchHit]:
        vec = self._vector(vector, "query vector")
        cubes = list(dict.fromkeys(cube_ids))
        if not cubes or k <= 0:
            return []
        params = {"cubes": cubes, "states": self._states(statuses), "vec": vec, "k": int(k)}
        rows = self._read(lambda tx: self._vector_rows(tx, params))
        return self._hits(rows, "vector", _to_cos)

    @_guard
    def text_search(
        self,
        query: str,
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> list[SearchHit]:
        if not isinstance(query, str):
            raise InvalidInputError("query must be a string")
        cubes = list(dict.fromkeys(cube_ids))
        lucene = scoped_lucene(lucene_query(query), cubes)
        if not lucene or not cubes or k <= 0:
            return []
        states = self._states(statuses)
        rows = self._read(lambda tx: self._text_rows(tx, lucene, cubes, states, int(k), self._text_limit(cubes, k)))
        return self._hits(rows, "bm25", float)

    @_guard
    def hybrid_search(
        self,
        vector: Sequence[float],
        query: str,
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> tuple[list[SearchHit], list[SearchHit]]:
        """`(vector_search(...), text_search(...))` in one read transaction on one connection (fewer round
        trips for hybrid recall); same results as the two calls."""
        vec = self._vector(vector, "query vector")
        cubes = list(dict.fromkeys(cube_ids))
        if not cubes or k <= 0:
            return [], []
        states = self._states(statuses)
        params = {"cubes": cubes, "states": states, "vec": vec, "k": int(k)}
        lucene = scoped_lucene(lucene_query(query), cubes) if isinstance(query, str) else ""

        def work(tx: neo4j.ManagedTransaction) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            self.last_plan = {}
            cached = self._cached_search(tx, params, lucene)
            if cached is not None and (cached[1] is not None or not lucene):
                return cached[0], cached[1] or []
            dense = cached[0] if cached is not None else self._index_rows(tx, params)
            lexical = []
            if lucene:
                lexical = self._text_rows(tx, lucene, cubes, states, int(k), self._text_limit(cubes, int(k)))
            return dense, lexical

        dense, lexical = self._read(work)
        return self._hits(dense, "vector", _to_cos), self._hits(lexical, "bm25", float)

    @_guard
    def recall_round(self, query: RecallQuery) -> RecallRound:
        """Recall's first round in one query from kept vectors (dense, full text, entities, working memory and
        the neighbours of the likely seeds); where the vectors are not kept, the separate calls."""
        vec = self._vector(query.vector, "query vector")
        cubes = list(dict.fromkeys(query.cube_ids))
        if not cubes or query.k <= 0 or self.cache_cube_rows <= 0:
            return recall_round_by_calls(self, query)
        params = {"cubes": cubes, "states": self._states(query.statuses), "vec": vec, "k": int(query.k)}
        lucene = scoped_lucene(lucene_query(query.text), cubes) if isinstance(query.text, str) else ""
        working = bool(query.working_cube_id and query.working_session_id and query.working_limit > 0)
        first_round = {
            "keys": [entity_key(c, n) for c in cubes for n in dict.fromkeys(query.entity_names)],
            "cap": ENTITY_FANOUT + 1, "fanout": ENTITY_FANOUT, "ek": max(0, int(query.entity_k)),
            "wcube": query.working_cube_id if working else None, "wsession": query.working_session_id,
            "wtype": MemoryType.WORKING.value, "wlimit": max(0, int(query.working_limit)) if working else 0,
            "expand": max(0, int(query.expand)), "w": int(query.expand_window),
        }

        def work(tx: neo4j.ManagedTransaction) -> Any:
            self.last_plan = {}
            return self._cached_search(tx, params, lucene, first_round)

        cached = self._read(work)
        if cached is None:  # a cube too big to keep: the ANN path, call by call
            return recall_round_by_calls(self, query)
        dense, lexical, rec = cached
        hits = {signal: self._hits(rows, signal, convert) for signal, rows, convert in (
            ("vector", dense, _to_cos), ("bm25", lexical or [], float),
            ("entity", sorted(rec["entity"], key=lambda r: (-r["score"], r["m"]["id"])), float))}
        decoded = {h.id: h.item for found in hits.values() for h in found}  # a neighbour often is a hit too

        def item(m: dict[str, Any]) -> MemoryItem:
            return decoded.get(m["id"]) or self._item(m)

        near = NeighbourReadAhead(
            seeds=frozenset(rec["seeds"]),
            rows=tuple(Nearby(sid, NeighbourKind(kind), float(x or 0), item(m)) for sid, kind, x, m in rec["near"]),
        )
        return RecallRound(dense=hits["vector"], lexical=hits["bm25"], entity=hits["entity"],
                           working=[item(m) for m in rec["working"]], near=near)

    @_guard
    def neighbours(self, ids: Sequence[str], *, cube_ids: Sequence[str], window: int = 1) -> list[MemoryItem]:
        cubes = list(dict.fromkeys(cube_ids))
        if not ids or not cubes:
            return []
        rows = self._rows(
            f"""
            UNWIND range(0, size($ids) - 1) AS si
            MATCH (s:{LABEL} {{id: $ids[si]}}) WHERE s.cube_id IN $cubes
            {_NEAR_OF_SEED}
            WITH n AS m, [kind, si, x] AS ord WHERE m.cube_id IN $cubes AND m.status = 'active' AND NOT m.id IN $ids
            RETURN {_NODE_FIELDS}, ord ORDER BY ord, m.id
            """,
            ids=list(dict.fromkeys(ids)),
            cubes=cubes,
            w=int(window),
        )
        seen: dict[str, MemoryItem] = {}
        for r in rows:
            mid = r["m"]["id"]
            if mid not in seen:
                seen[mid] = self._item(r["m"])
        return list(seen.values())

    @_guard
    def edges(self, ids: Sequence[str], *, rel: Rel | None = None, direction: str = "out") -> list[Edge]:
        if direction not in ("out", "in", "both"):
            raise InvalidInputError(f"direction must be out, in or both, not {direction!r}")
        if not ids:
            return []
        rel_value = Rel(rel).value if rel is not None else None
        clauses = []
        if direction in ("out", "both"):
            clauses.append(
                f"UNWIND $ids AS id MATCH (a:{LABEL} {{id: id}})-[r]->(b:{LABEL}) "
                "WHERE $rel IS NULL OR type(r) = $rel RETURN a.id AS src, type(r) AS rel, b.id AS dst, r.props AS p"
            )
        if direction in ("in", "both"):
            clauses.append(
                f"UNWIND $ids AS id MATCH (a:{LABEL})-[r]->(b:{LABEL} {{id: id}}) "
                "WHERE $rel IS NULL OR type(r) = $rel RETURN a.id AS src, type(r) AS rel, b.id AS dst, r.props AS p"
            )
        rows = self._rows(" UNION ".join(clauses), ids=list(dict.fromkeys(ids)), rel=rel_value)
        out = []
        for r in rows:
            try:
                kind = Rel(r["rel"])
            except ValueError:
                continue  # a relationship some other application put on our nodes
            out.append(Edge(src=r["src"], rel=kind, dst=r["dst"], props=json.loads(r["p"] or "{}")))
        return out

    @_guard
    def find_by_hash(self, cube_id: str, hashes: Sequence[str]) -> dict[str, str]:
        if not hashes:
            return {}
        rows = self._rows(
            f"MATCH (m:{LABEL}) WHERE m.content_hash IN $hashes AND m.cube_id = $cube AND m.status = 'active' "
            "RETURN m.content_hash AS h, m.id AS id ORDER BY m._ord",
            hashes=list(hashes),
            cube=cube_id,
        )
        return {r["h"]: r["id"] for r in rows}

    @_guard
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
        cubes = list(dict.fromkeys(cube_ids))
        if not cubes:
            return []
        # Only the filters given, as plain equalities: `($x IS NULL OR ...)` hides them from the planner, which
        # then reads every memory of the cube instead of seeking the session's (and `IN $list`, whose size it
        # cannot know, sometimes makes it scan the whole index).
        where = ("m.cube_id = $cubes[0]" if len(cubes) == 1 else "m.cube_id IN $cubes") + " AND m.status IN $states"
        where += " AND m.session_id = $session" if session_id is not None else ""
        where += " AND m.memory_type = $type" if memory_type is not None else ""
        hint = _SESSION_TYPE_HINT if session_id is not None and memory_type is not None else ""
        rows = self._rows(
            f"MATCH (m:{LABEL}) {hint} WHERE {where} "
            f"RETURN {_NODE_FIELDS} ORDER BY m.created_at DESC, m._ord DESC SKIP $offset LIMIT $limit",
            cubes=cubes,
            states=self._states(statuses),
            session=session_id,
            type=memory_type,
            offset=max(0, int(offset)),
            limit=max(0, int(limit)),
        )
        return [self._item(r["m"]) for r in rows]

    @_guard
    def count(
        self,
        *,
        cube_ids: Sequence[str] | None = None,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> int:
        if cube_ids is not None and not cube_ids:
            return 0
        rows = self._rows(
            f"MATCH (m:{LABEL}) WHERE m.status IN $states AND ($cubes IS NULL OR m.cube_id IN $cubes) "
            "RETURN count(m) AS n",
            states=self._states(statuses),
            cubes=list(dict.fromkeys(cube_ids)) if cube_ids is not None else None,
        )
        return int(rows[0]["n"]) if rows else 0

    # -- maintenance --------------------------------------------------------------------------------------

    @_guard
    def schema(self) -> dict[str, Any]:
        """Names and types of this store's indexes and constraints (for checks and `hippograph neo4j status`)."""
        indexes = self._rows("SHOW INDEXES YIELD name, type, state, labelsOrTypes, properties, options")
        constraints = self._rows("SHOW CONSTRAINTS YIELD name, type, labelsOrTypes, properties")
        return {"indexes": indexes, "constraints": constraints}

    @_guard
    def wipe(self) -> None:
        """Delete every node and relationship of this database (tests and benchmarks only)."""
        with self._vcache_lock:
            self._vcache.clear()
        with self._session() as s:
            while True:
                rec = s.run("MATCH (n) WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS n").single()
                if not rec or not rec["n"]:
                    break

    def close(self) -> None:
        self._driver.close()

    def __enter__(self) -> Neo4jTreeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Neo4jTreeStore", "lucene_escape", "lucene_query"]
