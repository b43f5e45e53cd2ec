"""Erasure: a user's or a cube's data removed from every store, for good.

One home for the rule of what "erased" means. A cube's memories, edges and entities (tree store), its
preferences (Milvus, rewritten so no deleted row stays in a segment file), every outbox job about it (payloads
hold message text) and those jobs' enrichment checkpoints, its document records, and every chat thread whose
checkpoints may hold its text (threads that wrote into it or recalled from it). SQLite files are rewritten
after the deletes (`stores.scrub`) and their WAL truncated, so no copy stays in any page or in `-wal` files.

Hard-deleting single memories goes through `erase_memories`: the memories, everything derived from them
(facts, topics, working memory whose source refs point at them, transitively), preferences evidenced by their
messages, and the enrichment jobs about them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from pydantic import BaseModel, Field

from hippograph.stores.documents import DocumentRegistry
from hippograph.stores.models import MemoryItem, MemoryStatus
from hippograph.stores.outbox import Outbox
from hippograph.stores.preferences.base import PreferenceStore
from hippograph.stores.registry import Registry
from hippograph.stores.tree.base import TreeStore

#: Deletes checkpoint threads by id (and leaves no copy behind); `graphs.checkpoint.erase_threads` bound to a saver.
ThreadEraser = Callable[[Iterable[str]], int]


class ErasureReport(BaseModel):
    """What an erasure removed, per store."""

    user_id: str | None = None
    cube_ids: list[str] = Field(default_factory=list)
    memories: int = 0
    preferences: int = 0
    jobs: int = 0
    threads: int = 0
    documents: int = 0


def erase_cubes(
    cube_ids: Sequence[str],
    *,
    user_id: str | None = None,
    tree: TreeStore,
    preferences: PreferenceStore | None,
    outbox: Outbox,
    registry: Registry,
    documents: DocumentRegistry | None,
    erase_chat_threads: ThreadEraser,
    erase_job_threads: ThreadEraser,
) -> ErasureReport:
    """Erase the cubes (and, with `user_id`, everything else of that user: preferences, jobs, threads).

    Registry rows are left to the caller, who removes them last: if erasure stops half-way it can be run again.
    """
    threads = set(registry.threads(user_id=user_id)) if user_id else set()
    for cube_id in cube_ids:
        threads |= set(registry.threads(cube_id=cube_id))
    report = ErasureReport(user_id=user_id, cube_ids=list(cube_ids))
    report.memories = sum(tree.erase_cube(c) for c in cube_ids)
    tree.scrub()
    if preferences is not None:
        report.preferences = preferences.erase(user_id=user_id, cube_ids=cube_ids)
    jobs = outbox.purge(user_id=user_id, cube_ids=cube_ids, thread_ids=sorted(threads))
    report.jobs = len(jobs)
    erase_job_threads(jobs)
    report.threads = erase_chat_threads(sorted(threads))
    registry.forget_threads(sorted(threads))
    if documents is not None:
        report.documents = sum(documents.erase_cube(c) for c in cube_ids)
    return report


def derived_closure(tree: TreeStore, cube_id: str, ids: Sequence[str], *, page: int = 1000) -> list[str]:
    """`ids` plus every memory of the cube derived from them (source refs of kind `memory`), transitively."""
    derived_from: dict[str, list[str]] = {}
    offset = 0
    while True:
        batch = tree.list(cube_ids=[cube_id], limit=page, offset=offset, statuses=tuple(MemoryStatus))
        for item in batch:
            for ref in item.source_refs:
                if ref.kind == "memory" and ref.ref:
                    derived_from.setdefault(ref.ref, []).append(item.id)
        if len(batch) < page:
            break
        offset += page
    closure, frontier = list(dict.fromkeys(ids)), list(ids)
    while frontier:
        frontier = [d for source in frontier for d in derived_from.get(source, []) if d not in closure]
        closure += list(dict.fromkeys(frontier))
    return closure


def erase_memories(
    items: Sequence[MemoryItem],
    *,
    tree: TreeStore,
    preferences: PreferenceStore | None,
    outbox: Outbox,
    erase_job_threads: ThreadEraser,
) -> ErasureReport:
    """Hard-delete memories and everything derived from them (see the module docstring)."""
    report = ErasureReport(cube_ids=sorted({i.cube_id for i in items}))
    doomed: list[str] = []
    for cube_id in report.cube_ids:
        doomed += derived_closure(tree, cube_id, [i.id for i in items if i.cube_id == cube_id])
    message_refs = {r.ref for i in items for r in i.source_refs if r.kind in ("message", "turn") and r.ref}
    report.memories = tree.delete(doomed, hard=True)
    tree.scrub()
    if preferences is not None and message_refs:
        for user in sorted({i.user_id for i in items}):
            evidenced = [p.id for p in preferences.list(user_id=user, include_inactive=True, limit=100_000)
                         if {e.message_id for e in p.evidence} & message_refs]
            if evidenced:
                report.preferences += preferences.erase(ids=evidenced)
    jobs = outbox.purge(memory_ids=doomed)
    report.jobs = len(jobs)
    erase_job_threads(jobs)
    return report
