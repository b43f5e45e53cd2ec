"""The `TreeStore` protocol: what every tree-memory backend (embedded, Neo4j) provides.

Every read is scoped by cube ids: a backend never returns a memory from a cube the caller did not name.
One contract suite (`tests/contract/`) runs against every backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from hippograph.stores.models import MemoryItem, MemoryStatus, MemoryType, SearchHit


class Rel(StrEnum):
    """Edge types of the tree. Direction is always `src -> dst` as named."""

    PARENT = "PARENT"
    """child -> parent (a fact under its topic, a chunk under its section)."""
    RELATE_TO = "RELATE_TO"
    SUPERSEDES = "SUPERSEDES"
    """new version -> old version."""
    MERGED_INTO = "MERGED_INTO"
    """duplicate -> the memory it was merged into."""
    NEXT = "NEXT"
    """a turn -> the next turn of the same session."""


#: An entity mentioned by more memories than this is skipped by `entity_search` (it tells memories apart no
#: better than chance, and following it would make the search cost grow with the cube).
ENTITY_FANOUT = 200


def entity_key(cube_id: str, name: str) -> str:
    """An Entity node's key: one node per cube and normalised name (cube ids never contain `|`)."""
    return f"{cube_id}|{name}"


def entity_weight(mentions: int) -> float:
    """How much sharing one entity counts: rare entities (few mentioning memories) count most."""
    return 1.0 / math.log2(1.0 + max(1, mentions))


class Edge(BaseModel):
    src: str
    rel: Rel
    dst: str
    props: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RecallQuery:
    """Every read of hybrid recall's first round (`TreeStore.recall_round`), so that a remote backend can answer
    them in one round trip."""

    vector: Sequence[float]
    """The query's embedding (dense signal)."""
    text: str
    """The query's text (full-text signal; plain text, backends escape any query syntax)."""
    cube_ids: Sequence[str]
    """Every read stays inside these cubes."""
    k: int
    """Hits per signal (dense and full text)."""
    statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,)
    """Statuses of the dense, full-text and entity hits (time travel adds superseded ones)."""
    entity_names: Sequence[str] = ()
    """Normalised entity names of the query (entity signal); empty = no entity search."""
    entity_k: int = 10
    """Hits of the entity signal."""
    working_cube_id: str | None = None
    """Cube of the session's working memory; None = not read."""
    working_session_id: str | None = None
    """The session whose working memory is read; None = not read."""
    working_limit: int = 0
    """The newest this many active working memories of the session (0 = not read)."""
    expand: int = 0
    """A remote backend may read ahead the neighbours (`neighbours(..., window=expand_window)`) of the seeds
    recall will expand: the best `expand` dense and full-text hits by their best rank in either list (equal
    full-text scores share a rank), dense order first."""
    expand_window: int = 1
    """Adjacent turns within this distance of a seed are its neighbours."""


class NeighbourKind(IntEnum):
    """How a neighbour relates to its seed; `neighbours` lists them in this order."""

    TURN = 0
    """An adjacent turn (same session, turn index within the window)."""
    PARENT = 1
    """The seed's `parent_id`."""
    CHILD = 2
    """A memory whose `parent_id` is the seed."""
    LINKED = 3
    """Either end of a `PARENT` edge of the seed."""


class Nearby(NamedTuple):
    """One neighbour of one seed, read ahead."""

    seed: str
    kind: NeighbourKind
    order: float
    """Turn index (turns) or creation time (children, linked): the order within a kind and seed."""
    item: MemoryItem


@dataclass(frozen=True)
class NeighbourReadAhead:
    """Neighbours of the likely seeds, read with the first round (`RecallQuery.expand`)."""

    seeds: frozenset[str]
    """Every seed whose neighbours were read (those with none included)."""
    rows: tuple[Nearby, ...]

    def of(self, ids: Sequence[str]) -> list[MemoryItem] | None:
        """What `neighbours(ids, window=expand_window)` returns (kind first, then the seed's position in `ids`,
        then `order`, then id; each memory once, the seeds left out), or None when an id was not read ahead."""
        if not set(ids) <= self.seeds:
            return None
        position = {sid: i for i, sid in enumerate(dict.fromkeys(ids))}
        picked = sorted((r for r in self.rows if r.seed in position and r.item.id not in position),
                        key=lambda r: (r.kind, position[r.seed], r.order, r.item.id))
        first: dict[str, MemoryItem] = {}
        for r in picked:
            first.setdefault(r.item.id, r.item)
        return list(first.values())


@dataclass(frozen=True, kw_only=True)
class RecallRound:
    """The answers to a `RecallQuery`: the same as the separate calls would give."""

    dense: list[SearchHit]
    """`vector_search(vector, k=k)`."""
    lexical: list[SearchHit]
    """`text_search(text, k=k)`."""
    entity: list[SearchHit]
    """`entity_search(entity_names, k=entity_k)`."""
    working: list[MemoryItem]
    """`list(cube_ids=[working_cube_id], session_id=..., memory_type=WorkingMemory, limit=working_limit)`."""
    near: NeighbourReadAhead | None = None
    """Neighbours read ahead (remote backends), or None: the caller asks `neighbours`."""


def recall_round_by_calls(store: TreeStore, query: RecallQuery) -> RecallRound:
    """`recall_round` as separate calls: what an in-process backend does (a call costs no round trip)."""
    dense, lexical = store.hybrid_search(query.vector, query.text, cube_ids=query.cube_ids, k=query.k,
                                         statuses=query.statuses)
    entity = (store.entity_search(query.entity_names, cube_ids=query.cube_ids, k=query.entity_k,
                                  statuses=query.statuses) if query.entity_names else [])
    working = (store.list(cube_ids=[query.working_cube_id], session_id=query.working_session_id,
                          memory_type=MemoryType.WORKING.value, limit=query.working_limit)
               if query.working_cube_id and query.working_session_id and query.working_limit > 0 else [])
    return RecallRound(dense=dense, lexical=lexical, entity=entity, working=working)


@runtime_checkable
class TreeStore(Protocol):
    """Tree memory: memories with vectors, full text and typed edges, partitioned by cube."""

    dimension: int
    """Length of the embedding vectors this store holds."""

    def add(self, items: Sequence[MemoryItem]) -> list[str]:
        """Insert (or replace, by id) a batch atomically. Each item must carry `embedding`. Returns ids."""
        ...

    def get(self, ids: Sequence[str], *, cube_ids: Sequence[str] | None = None) -> list[MemoryItem]:
        """Memories by id, in the order asked, skipping unknown ids (and ids outside `cube_ids` if given)."""
        ...

    def update(self, item: MemoryItem) -> None:
        """Replace a stored memory's fields (matched by id). Raises `NotFoundError` if absent."""
        ...

    def delete(self, ids: Sequence[str], *, hard: bool = False) -> int:
        """Soft delete (status `deleted`, kept) or hard delete (gone, edges too). Returns how many changed."""
        ...

    def embeddings(self, ids: Sequence[str]) -> dict[str, Any]:
        """Stored (normalised) vectors by id, as numpy arrays: for dedup, MMR and supersede without re-embedding."""
        ...

    def erase_cube(self, cube_id: str) -> int:
        """Hard-delete every memory, edge and entity of a cube. Returns how many memories went. An erasure
        follows it (and hard deletes) with `scrub`."""
        ...

    def scrub(self) -> None:
        """Leave no recoverable copy of hard-deleted data in the backend's files, where the backend controls
        them (erasure). May rewrite the whole store: run it once per erasure, not per delete."""
        ...

    def supersede(self, old_id: str, new_item: MemoryItem) -> str:
        """In one transaction: add `new_item`, mark `old_id` superseded with `valid_to`, link SUPERSEDES."""
        ...

    def vector_search(
        self,
        vector: Sequence[float],
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> list[SearchHit]:
        """Exact or ANN top-k by cosine; `hit.scores["vector"]` is the cosine. Never fewer than k if
        at least k memories match the filter."""
        ...

    def text_search(
        self,
        query: str,
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> list[SearchHit]:
        """Full-text (BM25) top-k; `hit.scores["bm25"]` is positive, higher is better. The query is plain
        text: backends escape any query syntax."""
        ...

    def hybrid_search(
        self,
        vector: Sequence[float],
        query: str,
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> tuple[list[SearchHit], list[SearchHit]]:
        """`(vector_search(...), text_search(...))`: the same results as the two calls, in one round trip where
        the backend is remote (hybrid recall calls this once per query)."""
        ...

    def recall_round(self, query: RecallQuery) -> RecallRound:
        """Every read of recall's first round (dense, full text, entities, working memory; neighbours of the
        likely seeds read ahead where that saves a round trip): the same results as the separate calls."""
        ...

    def neighbours(
        self, ids: Sequence[str], *, cube_ids: Sequence[str], window: int = 1
    ) -> list[MemoryItem]:
        """Adjacent turns (same session, turn index within `window`), parents and children of `ids`,
        excluding `ids` themselves; active memories only."""
        ...

    def add_edges(self, edges: Sequence[Edge]) -> None:
        """Create edges (idempotent: an existing `(src, rel, dst)` is kept once). All or nothing: an endpoint that
        does not exist raises `NotFoundError` and no edge of the batch is written."""
        ...

    def delete_edges(self, edges: Sequence[Edge]) -> int:
        """Remove these `(src, rel, dst)` edges (unknown ones are ignored); returns how many were removed."""
        ...

    def edges(
        self, ids: Sequence[str], *, rel: Rel | None = None, direction: str = "out"
    ) -> list[Edge]:
        """Edges leaving (`out`), entering (`in`) or touching (`both`) any of `ids`."""
        ...

    def add_mentions(self, mentions: Mapping[str, Sequence[str]]) -> int:
        """Entity graph: link each memory (by id) to the `Entity` nodes of these names in the memory's own cube
        (`MENTIONS` edges; entities are created on first mention, one per cube and name). Names are stored as
        given: normalise them first (`stores.entities.normalise_entity`). Idempotent; returns how many new
        edges were written. An unknown memory id raises `NotFoundError` and nothing is written."""
        ...

    def mentions(self, ids: Sequence[str]) -> dict[str, list[str]]:
        """memory id -> the entity names it mentions (sorted); memories without entities are left out."""
        ...

    def delete_mentions(self, memory_ids: Sequence[str]) -> int:
        """Remove these memories' `MENTIONS` edges, then every entity of theirs that nothing mentions any more
        (erasure: a purged memory leaves no entity behind). Returns how many edges were removed. Hard `delete`
        does this too."""
        ...

    def entity_search(
        self,
        names: Sequence[str],
        *,
        cube_ids: Sequence[str],
        k: int = 10,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> list[SearchHit]:
        """Memories of `cube_ids` mentioning any of these (normalised) entity names, most shared evidence first:
        `hits.scores["entity"]` sums `entity_weight(df)` over the matched entities (rare ones count most;
        entities mentioned by more than `ENTITY_FANOUT` memories are skipped). Ties by id."""
        ...

    def find_by_hash(self, cube_id: str, hashes: Sequence[str]) -> dict[str, str]:
        """content hash -> id of the active memory with that hash in the cube (exact-duplicate check)."""
        ...

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
        """Memories newest first, with paging and simple filters."""
        ...

    def count(
        self,
        *,
        cube_ids: Sequence[str] | None = None,
        statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
    ) -> int:
        ...

    def close(self) -> None:
        ...
