"""Export and import of everything a user owns, as JSON Lines (data portability; backups; moving installs).

One row per line, each with a `type`:

    {"type": "header", "format": "hippograph-user", "version": 1, "user_id": "ana"}
    {"type": "cube", "cube_id": "ana.work", "name": "work", "default": false}
    {"type": "memory", "item": {...MemoryItem...}, "embedding": [...]}     (every status: history included)
    {"type": "edge", "src": "...", "rel": "NEXT", "dst": "...", "props": {}}
    {"type": "preference", "preference": {...Preference...}}
    {"type": "document", "record": {...DocumentRecord...}}

Only cubes the user owns are exported (a shared cube's memories belong to its owner). Import re-homes cubes and
memories to the importing user (the exported default cube becomes theirs) and keeps memory ids, so edges and
history survive; it refuses, before writing anything, ids that belong to someone else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from langchain_core.embeddings import Embeddings

from hippograph.stores.documents import ChunkRecord, DocumentRecord, DocumentRegistry
from hippograph.stores.embedders import embed_array
from hippograph.stores.errors import InvalidInputError, NotFoundError
from hippograph.stores.models import check_id
from hippograph.stores.preferences.base import Preference, PreferenceStore
from hippograph.stores.registry import Registry, default_cube_id
from hippograph.stores.tree.base import TreeStore
from hippograph.stores.tree.ops import export_cube, import_cube, read_jsonl

FORMAT = "hippograph-user"
VERSION = 1


@dataclass
class Portable:
    """The stores an export reads and an import writes."""

    tree: TreeStore
    preferences: PreferenceStore
    registry: Registry
    documents: DocumentRegistry
    embeddings: Embeddings


def export_user(stores: Portable, path: str | Path, *, user_id: str) -> dict[str, int]:
    """Write the user's cubes, memories, edges, preferences and documents to `path`. Returns counts per type."""
    stores.registry.get_user(user_id)
    counts = {"cubes": 0, "memories": 0, "edges": 0, "preferences": 0, "documents": 0}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") as out:
        _write(out, {"type": "header", "format": FORMAT, "version": VERSION, "user_id": user_id})
        for cube_id in stores.registry.owned_cubes(user_id):
            cube = stores.registry.get_cube(cube_id)
            _write(out, {"type": "cube", "cube_id": cube_id, "name": cube.name,
                         "default": cube_id == default_cube_id(user_id)})
            counts["cubes"] += 1
            for key, n in export_cube(stores.tree, cube_id, out).items():
                counts[key] += n
            for record in stores.documents.list(cube_id, status=None):
                _write(out, {"type": "document", "record": asdict(record)})
                counts["documents"] += 1
        for pref in stores.preferences.list(user_id=user_id, include_inactive=True, limit=100_000):
            _write(out, {"type": "preference", "preference": pref.model_dump(mode="json")})
            counts["preferences"] += 1
    return counts


def import_user(stores: Portable, path: str | Path, *, user_id: str) -> dict[str, int]:
    """Load an `export_user` file as `user_id`. Returns counts per type."""
    rows = list(read_jsonl(path))
    if not all(isinstance(row, dict) for row in rows):
        raise InvalidInputError(f"{str(path)[:200]} is not a hippograph user export (every line is a JSON object)")
    if not rows or rows[0].get("type") != "header" or rows[0].get("format") != FORMAT:
        raise InvalidInputError(f"{str(path)[:200]} is not a hippograph user export (no `{FORMAT}` header)")
    if rows[0].get("version") != VERSION:
        raise InvalidInputError(f"export version {rows[0].get('version')!r} is not supported (want {VERSION})")
    exported_user = str(rows[0].get("user_id") or "")
    cube_map = _cube_map(rows, exported_user, user_id)
    _check_no_foreign_ids(stores, rows, cube_map, user_id)

    counts = {"cubes": 0, "memories": 0, "edges": 0, "preferences": 0, "documents": 0}
    for old, new in cube_map.items():
        if new != default_cube_id(user_id):
            stores.registry.create_cube(user_id, new, name=_cube_name(rows, old))
        counts["cubes"] += 1
    memory_rows = list(_rehomed_memories(rows, cube_map, user_id))
    edge_rows = [r for r in rows if r.get("type") == "edge"]
    result = import_cube(stores.tree, [*memory_rows, *edge_rows], embed=_embedder(stores.embeddings))
    counts["memories"], counts["edges"] = result["memories"], result["edges"]
    prefs = []
    for row in rows:
        if row.get("type") == "preference":
            data = dict(row["preference"], user_id=user_id)
            data["cube_id"] = cube_map.get(data.get("cube_id", ""), default_cube_id(user_id))
            prefs.append(Preference.model_validate(data))
        elif row.get("type") == "document":
            data = dict(row["record"])
            data["cube_id"] = cube_map[data["cube_id"]]
            data["chunks"] = [ChunkRecord(**c) for c in data.get("chunks", [])]
            stores.documents.put(DocumentRecord(**data))
            counts["documents"] += 1
    if prefs:
        stores.preferences.add(prefs)
        counts["preferences"] = len(prefs)
    return counts


def _write(out: IO[str], row: dict[str, Any]) -> None:
    out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _cube_name(rows: list[dict[str, Any]], cube_id: str) -> str:
    return next((str(r.get("name") or "") for r in rows if r.get("type") == "cube" and r["cube_id"] == cube_id), "")


def _cube_map(rows: list[dict[str, Any]], exported_user: str, user_id: str) -> dict[str, str]:
    """Exported cube id -> the importing user's cube id: the default cube maps to theirs, `<old user>.<name>` to
    `<user>.<name>`, any other id stays as it was."""
    mapping: dict[str, str] = {}
    prefix = f"{exported_user}."
    for row in rows:
        if row.get("type") != "cube":
            continue
        old = check_id(str(row.get("cube_id")), "cube id")
        if bool(row.get("default")) or old == default_cube_id(exported_user):
            mapping[old] = default_cube_id(user_id)
        elif exported_user and old.startswith(prefix):
            mapping[old] = check_id(f"{user_id}.{old.removeprefix(prefix)}", "cube id")
        else:
            mapping[old] = old
    return mapping


def _check_no_foreign_ids(stores: Portable, rows: list[dict[str, Any]], cube_map: dict[str, str],
                          user_id: str) -> None:
    for new in cube_map.values():
        try:
            owner = stores.registry.get_cube(new).owner_id
        except NotFoundError:
            continue
        if owner != user_id:
            raise InvalidInputError(f"cube id {new!r} belongs to another user; nothing was imported")
    ids = [str(r["item"]["id"]) for r in rows if r.get("type") == "memory"]
    mine = set(cube_map.values())
    for start in range(0, len(ids), 1000):
        for found in stores.tree.get(ids[start : start + 1000]):
            if found.cube_id not in mine:
                raise InvalidInputError(f"memory id {found.id} belongs to another cube; nothing was imported")
    unknown = {str(r["item"].get("cube_id")) for r in rows if r.get("type") == "memory"} - set(cube_map)
    if unknown:
        raise InvalidInputError(f"memories of cubes missing from the export: {sorted(unknown)[:3]}")


def _rehomed_memories(rows: list[dict[str, Any]], cube_map: dict[str, str], user_id: str
                      ) -> Iterator[dict[str, Any]]:
    for row in rows:
        if row.get("type") == "memory":
            item = dict(row["item"], user_id=user_id)
            item["cube_id"] = cube_map[item["cube_id"]]
            yield {"type": "memory", "item": item, "embedding": row.get("embedding")}


def _embedder(embeddings: Embeddings) -> Any:
    def embed(texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in embed_array(embeddings, texts)]

    return embed


__all__ = ["FORMAT", "VERSION", "Portable", "export_user", "import_user"]
