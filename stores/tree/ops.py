"""Tree operations over any `TreeStore` (embedded or Neo4j): read and maintain the topic tree and versions.

Only the protocol is used (`get`, `edges`, `list`, `add`, `add_edges`, `update`), so both backends behave the
same. The tree is made of `PARENT` edges (child -> topic); a memory's `parent_id` field names its primary
parent and is followed too. Versions are `SUPERSEDES` chains (new -> old); merged duplicates point at their
survivor by `MERGED_INTO`.

Export/import writes a cube as JSON Lines: one `{"type": "memory", "item": {...}, "embedding": [...]}` per
memory (every status: superseded and deleted versions are history too), then one
`{"type": "edge", "src": ..., "rel": ..., "dst": ..., "props": {...}}` per edge leaving the cube's memories.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from hippograph.stores.errors import InvalidInputError, NotFoundError
from hippograph.stores.models import MemoryItem, MemoryStatus
from hippograph.stores.tree.base import Edge, Rel, TreeStore

ALL_STATUSES = tuple(MemoryStatus)
EXPORT_VERSION = 1


def _one(store: TreeStore, memory_id: str, cube_ids: Sequence[str] | None = None) -> MemoryItem:
    found = store.get([memory_id], cube_ids=cube_ids)
    if not found:
        raise NotFoundError(f"memory {memory_id} not found")
    return found[0]


def set_parent(store: TreeStore, child_id: str, parent_id: str) -> None:
    """Hang `child_id` under the topic `parent_id`: a PARENT edge plus the child's `parent_id` field."""
    if child_id == parent_id:
        raise InvalidInputError("a memory cannot be its own parent")
    if child_id in {a.id for a in ancestors(store, parent_id)}:
        raise InvalidInputError(f"{parent_id} is under {child_id}: that PARENT edge would make a cycle")
    child = _one(store, child_id)
    _one(store, parent_id)
    store.add_edges([Edge(src=child_id, rel=Rel.PARENT, dst=parent_id)])
    if child.parent_id != parent_id:
        child.parent_id = parent_id
        store.update(child)


def parents(store: TreeStore, memory_id: str, *, cube_ids: Sequence[str] | None = None) -> list[MemoryItem]:
    """Direct parents: PARENT edges out of the memory, and its `parent_id`."""
    item = _one(store, memory_id, cube_ids)
    ids = [e.dst for e in store.edges([memory_id], rel=Rel.PARENT, direction="out")]
    if item.parent_id:
        ids.insert(0, item.parent_id)
    return store.get(list(dict.fromkeys(ids)), cube_ids=cube_ids)


def children(
    store: TreeStore,
    topic_id: str,
    *,
    cube_ids: Sequence[str] | None = None,
    statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
) -> list[MemoryItem]:
    """Memories directly under `topic_id` (PARENT edges into it), oldest first."""
    ids = [e.src for e in store.edges([topic_id], rel=Rel.PARENT, direction="in")]
    wanted = {MemoryStatus(s) for s in statuses}
    items = [m for m in store.get(list(dict.fromkeys(ids)), cube_ids=cube_ids) if m.status in wanted]
    return sorted(items, key=lambda m: (m.created_at, m.id))


def ancestors(
    store: TreeStore, memory_id: str, *, cube_ids: Sequence[str] | None = None, max_depth: int = 64
) -> list[MemoryItem]:
    """Parents, grandparents ... nearest first (breadth-first, each once; cycles cannot loop)."""
    out: list[MemoryItem] = []
    seen = {memory_id}
    frontier = [memory_id]
    for _ in range(max_depth):
        if not frontier:
            break
        items = store.get(frontier, cube_ids=cube_ids)
        up = [m.parent_id for m in items if m.parent_id]
        up += [e.dst for e in store.edges(frontier, rel=Rel.PARENT, direction="out")]
        nxt = [i for i in dict.fromkeys(up) if i not in seen]
        seen.update(nxt)
        found = store.get(nxt, cube_ids=cube_ids)
        out.extend(found)
        frontier = [m.id for m in found]
    return out


def subtree(
    store: TreeStore,
    topic_id: str,
    *,
    cube_ids: Sequence[str] | None = None,
    max_depth: int = 64,
    statuses: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,),
) -> list[tuple[MemoryItem, int]]:
    """The topic and everything under it as `(memory, depth)`, breadth-first (the topic is depth 0)."""
    root = _one(store, topic_id, cube_ids)
    out = [(root, 0)]
    seen = {topic_id}
    queue: deque[tuple[str, int]] = deque([(topic_id, 0)])
    while queue:
        node, depth = queue.popleft()
        if depth >= max_depth:
            continue
        for child in children(store, node, cube_ids=cube_ids, statuses=statuses):
            if child.id not in seen:
                seen.add(child.id)
                out.append((child, depth + 1))
                queue.append((child.id, depth + 1))
    return out


def history(store: TreeStore, memory_id: str, *, cube_ids: Sequence[str] | None = None) -> list[MemoryItem]:
    """Every version of a memory (the whole SUPERSEDES chain it belongs to), oldest first."""
    _one(store, memory_id, cube_ids)
    seen = {memory_id}
    frontier = [memory_id]
    while frontier:
        linked = store.edges(frontier, rel=Rel.SUPERSEDES, direction="both")
        nxt = [i for e in linked for i in (e.src, e.dst) if i not in seen]
        nxt = list(dict.fromkeys(nxt))
        seen.update(nxt)
        frontier = nxt
    versions = store.get(list(seen), cube_ids=cube_ids)
    # Order along the chain: an old version comes before whatever supersedes it.
    newer_of: dict[str, list[str]] = {}
    edges = store.edges(list(seen), rel=Rel.SUPERSEDES, direction="out")
    indegree = {v.id: 0 for v in versions}
    for e in edges:
        if e.src in indegree and e.dst in indegree:
            newer_of.setdefault(e.dst, []).append(e.src)
            indegree[e.src] += 1
    by_id = {v.id: v for v in versions}
    ready = sorted((i for i, d in indegree.items() if d == 0), key=lambda i: (by_id[i].created_at, i))
    ordered: list[MemoryItem] = []
    while ready:
        cur = ready.pop(0)
        ordered.append(by_id[cur])
        for nxt_id in newer_of.get(cur, []):
            indegree[nxt_id] -= 1
            if indegree[nxt_id] == 0:
                ready.append(nxt_id)
        ready.sort(key=lambda i: (by_id[i].created_at, i))
    leftover = [v for v in versions if v not in ordered]  # only if the chain had a cycle
    return ordered + sorted(leftover, key=lambda m: m.created_at)


def current_version(store: TreeStore, memory_id: str) -> MemoryItem:
    """The newest version of a memory (follows SUPERSEDES and MERGED_INTO forward)."""
    cur = memory_id
    seen = {cur}
    while True:
        newer = [e.src for e in store.edges([cur], rel=Rel.SUPERSEDES, direction="in")]
        merged = [e.dst for e in store.edges([cur], rel=Rel.MERGED_INTO, direction="out")]
        step = next((i for i in newer + merged if i not in seen), None)
        if step is None:
            return _one(store, cur)
        seen.add(step)
        cur = step


# --- export / import ---------------------------------------------------------------------------------------


def _all_items(store: TreeStore, cube_id: str, page: int = 1000) -> Iterator[MemoryItem]:
    offset = 0
    while True:
        batch = store.list(cube_ids=[cube_id], limit=page, offset=offset, statuses=ALL_STATUSES)
        yield from batch
        if len(batch) < page:
            return
        offset += page


def _embeddings(store: TreeStore, ids: Sequence[str]) -> dict[str, Any]:
    fn = getattr(store, "embeddings", None)
    return fn(ids) if callable(fn) and ids else {}


def export_cube(store: TreeStore, cube_id: str, out: str | Path | IO[str], *, page: int = 1000) -> dict[str, int]:
    """Write every memory (all statuses, with its vector) and edge of a cube as JSON Lines.
    Returns `{"memories": n, "edges": m}`."""
    if isinstance(out, str | Path):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            return export_cube(store, cube_id, fh, page=page)
    counts = {"memories": 0, "edges": 0}
    out.write(json.dumps({"type": "header", "version": EXPORT_VERSION, "cube_id": cube_id}) + "\n")
    ids: list[str] = []
    buffer: list[MemoryItem] = []

    def flush() -> None:
        vectors = _embeddings(store, [m.id for m in buffer])
        for m in buffer:
            vec = vectors.get(m.id)
            row = {
                "type": "memory",
                "item": m.model_dump(mode="json"),
                "embedding": [float(x) for x in vec] if vec is not None else None,
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts["memories"] += len(buffer)
        buffer.clear()

    for item in _all_items(store, cube_id, page):
        ids.append(item.id)
        buffer.append(item)
        if len(buffer) >= page:
            flush()
    flush()
    for start in range(0, len(ids), page):
        for e in store.edges(ids[start : start + page], direction="out"):
            out.write(json.dumps({"type": "edge", **e.model_dump(mode="json")}, ensure_ascii=False) + "\n")
            counts["edges"] += 1
    return counts


def read_jsonl(source: str | Path | IO[str]) -> Iterator[dict[str, Any]]:
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8") as fh:
            yield from read_jsonl(fh)
        return
    for n, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as exc:
            raise InvalidInputError(f"line {n} of the export is not JSON: {exc}") from None


def import_cube(
    store: TreeStore,
    source: str | Path | IO[str] | Iterable[dict[str, Any]],
    *,
    cube_id: str | None = None,
    user_id: str | None = None,
    embed: Callable[[list[str]], list[list[float]]] | None = None,
    batch: int = 500,
) -> dict[str, int]:
    """Load an `export_cube` file (ids kept; `cube_id`/`user_id` re-home the memories). Memories without a
    stored vector are embedded with `embed(texts)`. Edges whose ends are missing are skipped and counted."""
    is_file = isinstance(source, str | Path) or hasattr(source, "read")
    rows: Iterable[dict[str, Any]] = read_jsonl(source) if is_file else source  # type: ignore[arg-type,assignment]
    counts = {"memories": 0, "edges": 0, "edges_skipped": 0}
    pending: list[MemoryItem] = []
    edges: list[Edge] = []
    imported: set[str] = set()

    def flush() -> None:
        missing = [m for m in pending if m.embedding is None]
        if missing:
            if embed is None:
                raise InvalidInputError(
                    f"memory {missing[0].id} has no embedding in the export; pass embed= to re-embed"
                )
            for m, vec in zip(missing, embed([m.index_text for m in missing]), strict=True):
                m.embedding = list(vec)
        store.add(pending)
        counts["memories"] += len(pending)
        imported.update(m.id for m in pending)
        pending.clear()

    for row in rows:
        kind = row.get("type")
        if kind == "memory":
            data = dict(row["item"])
            if cube_id:
                data["cube_id"] = cube_id
            if user_id:
                data["user_id"] = user_id
            item = MemoryItem.model_validate(data)
            item.embedding = row.get("embedding")
            pending.append(item)
            if len(pending) >= batch:
                flush()
        elif kind == "edge":
            edges.append(Edge(src=row["src"], rel=Rel(row["rel"]), dst=row["dst"], props=row.get("props") or {}))
        elif kind not in ("header", None):
            raise InvalidInputError(f"unknown export row type {kind!r}")
    if pending:
        flush()
    if edges:
        ends = {i for e in edges for i in (e.src, e.dst)} - imported
        present = {m.id for m in store.get(list(ends))} if ends else set()
        ok = [e for e in edges if {e.src, e.dst} <= imported | present]
        for start in range(0, len(ok), batch):
            store.add_edges(ok[start : start + batch])
        counts["edges"] = len(ok)
        counts["edges_skipped"] = len(edges) - len(ok)
    return counts


__all__ = [
    "ancestors",
    "children",
    "current_version",
    "export_cube",
    "history",
    "import_cube",
    "parents",
    "read_jsonl",
    "set_parent",
    "subtree",
]
