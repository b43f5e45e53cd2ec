"""`HippoStore`: hippograph memory behind LangGraph's standard `BaseStore` API.

Any LangGraph agent (`graph.compile(store=HippoStore(...))`, `runtime.store`) or LangMem tool can keep its
memories in hippograph: put/get/search/delete/list_namespaces map onto tree memory.

Namespaces map to users and cubes:
- an unbound store (`HippoStore(services)`) reads the user from the namespace's first label:
  `("ana", "memories")` lives in Ana's default cube; the rest of the namespace is a path inside it;
- a bound store (`HippoStore(services, user_id="ana", cube_id="ana.notes")`) keeps every namespace in that
  cube, checked writable for that user: the way to hand a store to code you do not trust with other users.

Each item is one memory whose text is the value's `content`/`text`/`memory` field (or its JSON), so the chat
graph recalls it too; the value, namespace and key ride in `metadata`. A value shaped like a conversation message
(`role`/`speaker` + `content`/`text`, optional `name`, `timestamp`) goes through the turn model (`nodes/turns.py`):
the same key (speaker, time), question tag and `occurred_at` as every other write path. The memory id is derived from
(cube, namespace, key), so `put` on an existing key updates that memory in place (same id).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from hippograph.nodes.turns import to_turn, turn_memories
from hippograph.stores.embedders import embed_array
from hippograph.stores.errors import InvalidInputError, NotFoundError
from hippograph.stores.models import MAX_TEXT_CHARS, MemoryItem, MemoryStatus, check_id, content_hash, now
from hippograph.stores.registry import default_cube_id
from hippograph.stores.services import Services
from hippograph.stores.write import stable_id

SCAN_LIMIT = 10_000
"""Most memories a namespace listing or filtered search scans in one cube."""


def _text_of(value: dict[str, Any]) -> str:
    for field in ("content", "text", "memory"):
        if isinstance(value.get(field), str) and value[field].strip():
            return str(value[field])[:MAX_TEXT_CHARS]
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text[:MAX_TEXT_CHARS] if text.strip("{} ") else "{}"


def _is_turn(value: dict[str, Any]) -> bool:
    """A value shaped like a conversation message (`role`/`speaker` and `content`/`text`): stored as a turn."""
    said = value.get("content") if isinstance(value.get("content"), str) else value.get("text")
    return bool(isinstance(said, str) and said.strip() and (value.get("role") or value.get("speaker")))


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _matches(value: dict[str, Any], filter: dict[str, Any] | None) -> bool:
    if not filter:
        return True
    for key, want in filter.items():
        have = value.get(key)
        if isinstance(want, dict) and any(k.startswith("$") for k in want):
            for op, arg in want.items():
                ok = {"$eq": lambda h, a: h == a, "$ne": lambda h, a: h != a,
                      "$gt": lambda h, a: h is not None and h > a, "$gte": lambda h, a: h is not None and h >= a,
                      "$lt": lambda h, a: h is not None and h < a, "$lte": lambda h, a: h is not None and h <= a,
                      "$in": lambda h, a: h in a, "$nin": lambda h, a: h not in a}.get(op)
                if ok is None:
                    raise InvalidInputError(f"unsupported filter operator {op!r}")
                try:
                    if not ok(have, arg):
                        return False
                except TypeError:
                    return False
        elif isinstance(want, dict):  # a nested object matches when it holds every given field (as BaseStore's)
            if not isinstance(have, dict) or not _matches(have, want):
                return False
        elif have != want:
            return False
    return True


def _namespace_matches(namespace: tuple[str, ...], condition: MatchCondition) -> bool:
    path = tuple(condition.path)
    if len(path) > len(namespace):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[len(namespace) - len(path):]
    return all(p == "*" or p == n for p, n in zip(path, part, strict=True))


class HippoStore(BaseStore):
    """A LangGraph `BaseStore` over hippograph's tree memory (see the module docs for the namespace mapping)."""

    supports_ttl = False

    def __init__(self, services: Services | None = None, *, user_id: str | None = None,
                 cube_id: str | None = None) -> None:
        self.services = services or Services.from_settings()
        self.user_id = check_id(user_id, "user id") if user_id is not None else None
        self.cube_id = cube_id
        if self.user_id is not None:
            self.services.registry.ensure_user(self.user_id)
            self.cube_id = self.services.registry.writable(self.user_id,
                                                           [cube_id or default_cube_id(self.user_id)])[0]

    # -- mapping -------------------------------------------------------------------------------------------

    def _scope(self, namespace: tuple[str, ...], *, prefix: bool = False) -> tuple[str, str]:
        """(user id, cube id) that holds a namespace."""
        if self.user_id is not None and self.cube_id is not None:
            return self.user_id, self.cube_id
        if not namespace:
            raise InvalidInputError("an unbound HippoStore needs the user id as the namespace's first label")
        user_id = check_id(namespace[0], "user id (first namespace label)")
        return user_id, self.services.registry.write_cube(user_id, self.cube_id)

    def _read_cube(self, namespace: tuple[str, ...]) -> str | None:
        """The cube a read looks in; None when an unbound store's namespace names a user who does not exist. A
        read never creates a user: a typo must not become an account, and an erased user's id is never reused."""
        if self.user_id is None and namespace:
            try:
                self.services.registry.get_user(check_id(namespace[0], "user id (first namespace label)"))
            except NotFoundError:
                return None
        return self._scope(namespace)[1]

    @staticmethod
    def _id(cube_id: str, namespace: tuple[str, ...], key: str) -> str:
        return stable_id("store", cube_id, *namespace, "\x1e", key)

    def _item(self, memory: MemoryItem, score: float | None = None) -> Item | SearchItem:
        meta = memory.metadata
        namespace, key, value = tuple(meta["namespace"]), str(meta["store_key"]), dict(meta.get("value") or {})
        if score is None:
            return Item(value=value, key=key, namespace=namespace, created_at=_ts(memory.created_at),
                        updated_at=_ts(memory.updated_at))
        return SearchItem(namespace=namespace, key=key, value=value, created_at=_ts(memory.created_at),
                          updated_at=_ts(memory.updated_at), score=score)

    @staticmethod
    def _is_store_item(memory: MemoryItem) -> bool:
        return "namespace" in memory.metadata and "store_key" in memory.metadata

    # -- operations ----------------------------------------------------------------------------------------

    def _get(self, op: GetOp) -> Item | None:
        cube = self._read_cube(op.namespace)
        if cube is None:
            return None
        found = self.services.tree.get([self._id(cube, op.namespace, op.key)], cube_ids=[cube])
        found = [m for m in found if m.status == MemoryStatus.ACTIVE and self._is_store_item(m)]
        return self._item(found[0]) if found else None

    def _put(self, op: PutOp) -> None:
        if not isinstance(op.key, str) or not op.key:
            raise InvalidInputError("a store key must be a non-empty string")
        tree = self.services.tree
        if op.value is None:  # a delete: like a read, it never creates a user
            home = self._read_cube(op.namespace)
            if home is not None and tree.get([gone := self._id(home, op.namespace, op.key)], cube_ids=[home]):
                tree.delete([gone], hard=True)
            return
        user_id, cube = self._scope(op.namespace)
        memory_id = self._id(cube, op.namespace, op.key)
        existing = tree.get([memory_id], cube_ids=[cube])
        value = dict(op.value)
        text = _text_of(value)
        metadata = {"namespace": list(op.namespace), "store_key": op.key, "value": value}
        key, occurred = "/".join(op.namespace), None
        tags: list[str] = []
        if _is_turn(value):  # a conversation message: keyed, dated and tagged by the one turn model
            (turn,) = turn_memories([to_turn(value, user_name=user_id)], user_id=user_id, cube_id=cube,
                                    source="store", context=self.services.settings.turn_key)
            text, key, tags, occurred = turn.text, turn.key, turn.tags, turn.occurred_at
        if existing:
            item = existing[0]
            item.text, item.content_hash, item.key, item.tags = text, content_hash(text), key, tags
            item.occurred_at = occurred
            item.metadata, item.updated_at, item.status = metadata, now(), MemoryStatus.ACTIVE
        else:
            item = MemoryItem(id=memory_id, user_id=user_id, cube_id=cube, text=text, key=key, tags=tags,
                              occurred_at=occurred, source="store", metadata=metadata)
        item.embedding = embed_array(self.services.embeddings, [item.index_text])[0].tolist()
        if existing:
            tree.update(item)
        else:
            tree.add([item])

    def _search(self, op: SearchOp) -> list[SearchItem]:
        cube = self._read_cube(op.namespace_prefix)
        if cube is None:
            return []
        prefix = list(op.namespace_prefix)
        limit, offset = max(0, op.limit), max(0, op.offset)

        def in_prefix(m: MemoryItem) -> bool:
            return self._is_store_item(m) and list(m.metadata["namespace"])[: len(prefix)] == prefix \
                and _matches(dict(m.metadata.get("value") or {}), op.filter)

        if op.query:
            vector = embed_array(self.services.embeddings, [op.query])[0].tolist()
            hits = self.services.tree.vector_search(vector, cube_ids=[cube], k=min(SCAN_LIMIT, 50 + 10 * (
                limit + offset)))
            scored = [(h.item, float(h.scores.get("vector", h.score))) for h in hits if in_prefix(h.item)]
        else:
            items = self.services.tree.list(cube_ids=[cube], limit=SCAN_LIMIT)
            scored = [(m, None) for m in items if in_prefix(m)]  # type: ignore[misc]
            scored.sort(key=lambda pair: pair[0].updated_at, reverse=True)
        out = []
        for memory, score in scored[offset: offset + limit]:
            item = self._item(memory, score if score is not None else 0.0)
            if score is None:
                item.score = None  # type: ignore[union-attr]
            out.append(item)
        return out  # type: ignore[return-value]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        if self.cube_id is not None and self.user_id is not None:
            cubes = [self.cube_id]
        else:
            prefixes = [c for c in op.match_conditions or () if c.match_type == "prefix" and c.path
                        and c.path[0] != "*"]
            if prefixes:
                cube = self._read_cube(tuple(prefixes[0].path))
                cubes = [cube] if cube is not None else []
            else:  # every user's default cube: an unbound store is for trusted, single-tenant code
                cubes = [default_cube_id(u.id) for u in self.services.registry.list_users()]
        seen: set[tuple[str, ...]] = set()
        for memory in self.services.tree.list(cube_ids=cubes, limit=SCAN_LIMIT):
            if not self._is_store_item(memory):
                continue
            namespace = tuple(memory.metadata["namespace"])
            if op.match_conditions and not all(_namespace_matches(namespace, c) for c in op.match_conditions):
                continue
            seen.add(namespace[: op.max_depth] if op.max_depth is not None else namespace)
        return sorted(seen)[op.offset: op.offset + op.limit]

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        results: list[Result] = []
        for op in ops:
            if isinstance(op, GetOp):
                results.append(self._get(op))
            elif isinstance(op, PutOp):
                self._put(op)
                results.append(None)
            elif isinstance(op, SearchOp):
                results.append(self._search(op))
            elif isinstance(op, ListNamespacesOp):
                results.append(self._list_namespaces(op))
            else:
                raise InvalidInputError(f"unknown store operation {type(op).__name__}")
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.to_thread(self.batch, list(ops))
