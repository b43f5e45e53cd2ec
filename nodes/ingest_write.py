"""write: carry out the dedup plan through the one write path, link the structure, register the document.

Order: structure nodes (document, sections) via `write_memories`; chunks — kept ones untouched (their position
refreshed if it moved), new ones via `write_memories`, changed ones via `tree.supersede` (old version kept as
`superseded`, linked by SUPERSEDES); facts (fine mode); vanished chunks archived (soft delete). Then PARENT
edges (chunk -> section -> ... -> document, fact -> chunk) and NEXT edges between consecutive chunks, and the
new chunk list goes into the document registry. The report node turns the state into one result row.

New and changed chunks stream through in steps of `ingest_batch` (settings): embed a step, write it, emit a
progress event (LangGraph custom stream: `{"ingest": "chunks", "document", "done", "total"}`), so a 5 MB file
never holds all its vectors at once, a caller sees it advance chunk by chunk, and an interrupted ingest
resumes where it stopped (chunk ids are stable: written steps are found, not embedded again).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.ingest_extract import SEP
from hippograph.nodes.ingest_state import DocState, IngestContext
from hippograph.stores.documents import ChunkRecord, DocumentRecord, DocumentRegistry
from hippograph.stores.embedders import embed_array
from hippograph.stores.models import MemoryItem
from hippograph.stores.services import Services
from hippograph.stores.tree.base import Edge, Rel, TreeStore
from hippograph.stores.write import write_memories


def make_write(services: Services, documents: DocumentRegistry) -> Node:
    tree, embeddings = services.tree, services.embeddings

    @timed("write")
    def write(state: DocState, runtime: Runtime[IngestContext]) -> dict[str, Any]:
        cube, plan = state["cube_id"], state["plan"]
        chunk_items: list[MemoryItem] = state["chunk_items"]
        derived: dict[int, list[MemoryItem]] = state.get("derived") or {}
        structure: list[MemoryItem] = state["structure"]
        added = 0
        embedder = TimedEmbeddings(embeddings)
        step = int((state.get("chunking") or {}).get("batch") or 64)
        progress = ChunkProgress(runtime, str(state.get("path") or state.get("doc_key") or ""), len(chunk_items))

        # 1. structure nodes; a section that dedups onto another memory is remapped for its children.
        ids, written = write_memories(tree, embedder, structure)
        added += written
        remap = {item.id: final for item, final in zip(structure, ids, strict=True) if item.id != final}
        for item in [*structure, *chunk_items]:
            if item.parent_id in remap:
                item.parent_id = remap[item.parent_id]

        # 2. chunks
        final: list[str] = [""] * len(chunk_items)
        kept = {int(n): memory_id for memory_id, n in plan["keep"]}
        for n, memory_id in kept.items():
            final[n] = memory_id
        moved = [m for m in tree.get(list(kept.values())) if m.metadata.get("ingest_role") in ("chunk", "turn")]
        by_id = {m.id: m for m in moved}
        for n, memory_id in kept.items():
            stored, fresh = by_id.get(memory_id), chunk_items[n]
            ours = stored is not None and stored.metadata.get("doc_id") == state["doc_id"]
            if stored is not None and ours and (stored.turn_index, stored.source_refs, stored.parent_id) != (
                    fresh.turn_index, fresh.source_refs, fresh.parent_id):
                stored.turn_index, stored.source_refs, stored.parent_id = (
                    fresh.turn_index, fresh.source_refs, fresh.parent_id)
                tree.update(stored)
        progress.advance(len(kept))
        adds = [int(n) for n in plan["add"]]
        for at in range(0, len(adds), step):  # embed a step, write it, report it
            part = adds[at : at + step]
            ids, written = write_memories(tree, embedder, [chunk_items[n] for n in part])
            added += written
            for n, memory_id in zip(part, ids, strict=True):
                final[n] = memory_id
            progress.advance(len(part))
        superseded, archive = 0, list(plan["archive"])
        changes: list[tuple[str, int]] = [(str(old), int(n)) for old, n in plan["supersede"]]
        for at in range(0, len(changes), step):
            changing = changes[at : at + step]
            present = tree.find_by_hash(cube, [chunk_items[n].content_hash for _, n in changing])
            embedder.fill([chunk_items[n] for _, n in changing if chunk_items[n].content_hash not in present])
            for old_id, n in changing:
                item = chunk_items[n]
                existing = present.get(item.content_hash)
                if existing is not None:  # the new text already lives in the cube: point there, retire the old
                    final[n] = existing
                    archive.append(old_id)
                    continue
                final[n] = tree.supersede(old_id, item)
                present[item.content_hash] = final[n]
                superseded += 1
                added += 1
            progress.advance(len(changing))

        # 3. derived facts (fine mode) of new or changed chunks
        derived_ids: dict[int, list[str]] = {int(k): list(v) for k, v in plan.get("kept_derived", {}).items()}
        facts = [(n, fact) for n, items in derived.items() for fact in items if int(n) not in kept]
        for n, fact in facts:
            fact.parent_id = final[int(n)]
        if facts:
            ids, written = write_memories(tree, embedder, [fact for _, fact in facts])
            added += written
            for (n, _), memory_id in zip(facts, ids, strict=True):
                derived_ids.setdefault(int(n), []).append(memory_id)

        # 4. archive what vanished (unless another document or this version still uses it)
        in_use = documents.ids_in_use(cube, exclude_key=state["doc_key"]) | set(final)
        in_use |= {i for ids_ in derived_ids.values() for i in ids_}
        to_archive = sorted({a for a in archive if a not in in_use})
        archived = tree.delete(to_archive) if to_archive else 0
        old_sections = plan.get("old_sections", {})
        new_sections = {SEP.join(m.source_refs[0].extra.get("heading_path") or []): m.id for m in structure[1:]}
        new_sections = {k: remap.get(v, v) for k, v in new_sections.items()}
        gone = [sid for key, sid in old_sections.items() if key and key not in new_sections and sid not in in_use
                and sid not in new_sections.values()]
        if gone:
            archived += tree.delete(gone)

        # 5. edges
        edges = [Edge(src=remap.get(item.id, item.id), rel=Rel.PARENT, dst=item.parent_id)
                 for item in structure if item.parent_id]
        edges += [Edge(src=final[n], rel=Rel.PARENT, dst=item.parent_id)
                  for n, item in enumerate(chunk_items) if item.parent_id and final[n] != item.parent_id]
        edges += [Edge(src=fid, rel=Rel.PARENT, dst=final[n]) for n, fids in derived_ids.items() for fid in fids]
        edges += [Edge(src=a, rel=Rel.NEXT, dst=b) for a, b in itertools.pairwise(final) if a != b]
        edges = [e for e in edges if e.src != e.dst]
        tree.delete_edges(_stale_edges(tree, edges, final, plan, [remap.get(s.id, s.id) for s in structure]))
        tree.add_edges(edges)

        # 6. registry
        documents.put(DocumentRecord(
            cube_id=cube, doc_key=state["doc_key"], doc_id=remap.get(state["doc_id"], state["doc_id"]),
            kind=state["kind"], title=state["title"], path=state.get("path"), fingerprint=state["fingerprint"],
            sections={"": remap.get(state["doc_id"], state["doc_id"]), **new_sections},
            chunks=[ChunkRecord(index=n, content_hash=item.content_hash, memory_id=final[n],
                                heading_path=list(item.source_refs[0].extra.get("heading_path") or []),
                                start=int(item.source_refs[0].extra.get("start") or 0),
                                end=int(item.source_refs[0].extra.get("end") or 0),
                                derived_ids=derived_ids.get(n, []))
                    for n, item in enumerate(chunk_items)],
        ))
        stats = {"added": added, "superseded": superseded, "archived": archived,
                 "skipped": len(kept) + int(plan.get("duplicates", 0)), "memory_ids": final}
        return {"plan": {**plan, "stats": stats}, "timings": {"embed": embedder.seconds * 1000.0}}

    return write


class TimedEmbeddings(Embeddings):
    """The services' embeddings, counting the seconds spent embedding (the report's `embed` stage)."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.seconds = 0.0

    def embed_array(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return embed_array(self.inner, texts)
        finally:
            self.seconds += time.perf_counter() - started

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def fill(self, items: list[MemoryItem]) -> None:
        """Embed the items that have no vector yet (one call: the embedder batches and sorts by length)."""
        todo = [item for item in items if item.embedding is None]
        if todo:
            for item, vector in zip(todo, self.embed_array([i.index_text for i in todo]), strict=True):
                item.embedding = vector.tolist()


class ChunkProgress:
    """Custom stream events as a document's chunks are written: `{"ingest": "chunks", "document", "done",
    "total"}` (`graph.stream(..., stream_mode="custom", subgraphs=True)`; the CLI's progress bar)."""

    def __init__(self, runtime: Runtime[IngestContext], document: str, total: int) -> None:
        self.writer = runtime.stream_writer
        self.document, self.total, self.done = document, total, 0

    def advance(self, n: int) -> None:
        if n <= 0:
            return
        self.done += n
        self.writer({"ingest": "chunks", "document": self.document, "done": self.done, "total": self.total,
                     "step": n})


def _stale_edges(tree: TreeStore, wanted: list[Edge], final: list[str], plan: dict[str, Any],
                 structure_ids: list[str]) -> list[Edge]:
    """Edges of this document's earlier version that its new version no longer has: NEXT between chunks that
    stopped being consecutive, PARENT from a chunk to a section it moved out of. Edges to other documents (a chunk
    two documents share) are left alone."""
    keep = {(e.src, e.rel, e.dst) for e in wanted}
    chunks = set(final) | set(plan.get("old_chunk_ids", []))
    sections = set(structure_ids) | set(plan.get("old_sections", {}).values())
    stale = [e for e in tree.edges(sorted(chunks), rel=Rel.NEXT) if e.dst in chunks]
    stale += [e for e in tree.edges(sorted(set(final)), rel=Rel.PARENT) if e.dst in sections]
    return [e for e in stale if (e.src, e.rel, e.dst) not in keep]


def make_report(services: Services, documents: DocumentRegistry) -> Node:
    def report(state: DocState, runtime: Runtime[IngestContext]) -> dict[str, Any]:
        status = state.get("status", "error")
        stats = (state.get("plan") or {}).get("stats", {})
        row: dict[str, Any] = {
            "order": state["source"].get("order", 0),
            "document": state.get("path") or state.get("doc_key") or "?",
            "title": state.get("title", ""),
            "kind": state.get("kind", state["source"].get("kind")),
            "doc_id": state.get("doc_id"),
            "status": status,
            "error": state.get("error"),
            "warnings": state.get("warnings", []),
            "bytes": state.get("size", 0),
            "chunks": len(state.get("chunks") or []),
            "added": stats.get("added", 0),
            "skipped": stats.get("skipped", 0),
            "superseded": stats.get("superseded", 0),
            "archived": stats.get("archived", 0),
            "memory_ids": stats.get("memory_ids", []),
            "timings": dict(state.get("timings") or {}),
        }
        if status == "unchanged":
            previous = documents.get(state["cube_id"], state["doc_key"])
            chunks = previous.chunks if previous else []
            row |= {"chunks": len(chunks), "skipped": len(chunks), "memory_ids": [c.memory_id for c in chunks]}
        return {"results": [row]}

    return report
