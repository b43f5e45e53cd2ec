"""The ingest graph: documents and conversations into tree memory, one `Send` per document.

    START -> plan --Send per document--> document -> summarize -> schedule_enrichment -> END

    document (a subgraph, one run per document, in parallel):
        convert -> chunk -> extract -> dedup -> write -> report
            \\______\\_______ (error or unchanged) ________/

Input (`IngestInput`): `paths` (files or directories), `texts`, `conversations` (message lists). Context
(`IngestContext`): `user_id`, `cube_id`, `mode` (fast/fine), `recursive`, chunker overrides. Output: `results`
(one row per document: status new/changed/unchanged/error, chunks, added/skipped/superseded/archived, error,
per-stage ms) and `summary` (totals).

Example::

    graph = build_ingest_graph(Services.from_settings())
    out = graph.invoke({"paths": ["docs/"]}, context=IngestContext(user_id="ana", recursive=True))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import ValidationError

from hippograph.graphs.chat import Checkpointer, resolve_checkpointer
from hippograph.nodes._timing import Node, timed
from hippograph.nodes.enrich_entities import make_schedule_ingest_enrichment
from hippograph.nodes.ingest_chunk import chunk_config, make_chunk
from hippograph.nodes.ingest_convert import make_convert
from hippograph.nodes.ingest_dedup import make_dedup
from hippograph.nodes.ingest_extract import make_extract
from hippograph.nodes.ingest_state import DocOutput, DocState, IngestContext, IngestInput, IngestState
from hippograph.nodes.ingest_write import make_report, make_write
from hippograph.stores.documents import DocumentRegistry
from hippograph.stores.errors import InvalidInputError
from hippograph.stores.models import check_id
from hippograph.stores.services import Services

__all__ = ["IngestContext", "IngestInput", "IngestState", "build_ingest_graph", "documents_registry",
           "expand_paths"]


def documents_registry(services: Services) -> DocumentRegistry:
    """The document registry next to the other embedded stores (`<data_dir>/documents.sqlite`)."""
    return DocumentRegistry(services.settings.data_dir / "documents.sqlite")


def expand_paths(paths: list[str], *, recursive: bool) -> list[str]:
    """Files named, plus the files in named directories (sub-directories too when `recursive`); hidden files
    and directories inside a named directory are skipped. Missing paths stay in (and are reported)."""
    out: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_dir():
            out.append(str(path))
            continue
        found = path.rglob("*") if recursive else path.iterdir()
        out += sorted(str(p) for p in found if p.is_file()
                      and not any(part.startswith(".") for part in p.relative_to(path).parts))
    return list(dict.fromkeys(out))


def _route_after(state: DocState) -> str:
    return "report" if state.get("status") in ("error", "skipped", "unchanged") else "next"


def build_document_graph(services: Services, documents: DocumentRegistry) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The per-document pipeline (a subgraph of the ingest graph; usable alone with a `DocState` input)."""
    builder = StateGraph(DocState, context_schema=IngestContext, output_schema=DocOutput)
    builder.add_node("convert", make_convert(services, documents))
    builder.add_node("chunk", make_chunk(services))
    builder.add_node("extract", make_extract(services))
    builder.add_node("dedup", make_dedup(services, documents))
    builder.add_node("write", make_write(services, documents))
    builder.add_node("report", make_report(services, documents))
    builder.add_edge(START, "convert")
    builder.add_conditional_edges("convert", _route_after, {"next": "chunk", "report": "report"})
    builder.add_conditional_edges("chunk", _route_after, {"next": "extract", "report": "report"})
    builder.add_edge("extract", "dedup")
    builder.add_edge("dedup", "write")
    builder.add_edge("write", "report")
    builder.add_edge("report", END)
    return builder.compile(name="ingest_document")


def make_document(services: Services, documents: DocumentRegistry) -> Node:
    """The per-document pipeline behind a guard: whatever fails inside one document becomes that document's
    error row (with the reason), so one bad document never aborts the batch after others were written."""
    pipeline = build_document_graph(services, documents)

    def document(state: DocState, config: RunnableConfig) -> dict[str, Any]:
        try:
            return pipeline.invoke(state, config)  # type: ignore[no-any-return]
        except GraphBubbleUp:
            raise  # interrupts and other graph control flow are not failures
        except Exception as exc:  # reported in the document's row, not raised
            source = state.get("source") or {}
            name = source.get("path") or source.get("name") or source.get("conversation_id") or source.get("kind")
            return {"results": [{"order": source.get("order", 0), "document": str(name or "?"),
                                 "kind": source.get("kind"), "status": "error",
                                 "error": _reason(exc), "warnings": [],
                                 "chunks": 0, "added": 0, "skipped": 0, "superseded": 0, "archived": 0,
                                 "memory_ids": [], "timings": {}}]}

    return document


def _reason(exc: Exception) -> str:
    """A one-line reason for a document's error row (a pydantic error's first message, not its whole dump)."""
    if isinstance(exc, ValidationError) and exc.errors():
        return f"{type(exc).__name__}: {exc.errors()[0].get('msg', '')}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def make_plan(services: Services) -> Node:
    @timed("plan")
    def plan(state: IngestState, runtime: Runtime[IngestContext]) -> dict[str, Any]:
        ctx = runtime.context or IngestContext()
        user_id = check_id(ctx.user_id, "user id")
        cube_id = services.registry.write_cube(user_id, ctx.cube_id)
        sources: list[dict[str, Any]] = []
        for path in expand_paths(list(state.get("paths") or []), recursive=ctx.recursive):
            sources.append({"kind": "file", "path": path})
        for text in state.get("texts") or []:
            sources.append({"kind": "text", **(text if isinstance(text, dict) else {"text": text})})
        for conversation in state.get("conversations") or []:
            sources.append({"kind": "conversation", **conversation})
        if not sources:
            raise InvalidInputError("nothing to ingest: give paths, texts or conversations")
        for order, source in enumerate(sources):
            source["order"] = order
        return {"user_id": user_id, "cube_id": cube_id, "sources": sources}

    return plan


def make_fan_out(services: Services) -> Callable[..., Any]:
    def fan_out(state: IngestState, runtime: Runtime[IngestContext]) -> list[Send]:
        ctx = runtime.context or IngestContext()
        chunking = chunk_config(services, ctx)
        return [Send("document", {"source": source, "user_id": state["user_id"], "cube_id": state["cube_id"],
                                  "mode": ctx.mode, "chunking": chunking})
                for source in state["sources"]]

    return fan_out


def summarize(state: IngestState) -> dict[str, Any]:
    results = sorted(state.get("results") or [], key=lambda r: r.get("order", 0))
    totals: dict[str, Any] = {"documents": len(results), "errors": sum(r["status"] == "error" for r in results),
                              "unchanged": sum(r["status"] == "unchanged" for r in results),
                              "skipped_documents": sum(r["status"] == "skipped" for r in results)}
    for key in ("chunks", "added", "skipped", "superseded", "archived", "bytes"):
        totals[key] = sum(int(r.get(key) or 0) for r in results)
    stages: dict[str, float] = {}
    for row in results:
        for stage, ms in (row.get("timings") or {}).items():
            stages[stage] = stages.get(stage, 0.0) + ms
    totals["stage_ms"] = stages
    totals["finished_at"] = time.time()
    return {"summary": totals}


def build_ingest_graph(
    services: Services | None = None,
    *,
    checkpointer: Checkpointer = None,
    documents: DocumentRegistry | None = None,
    name: str = "ingest",
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the ingest graph. `documents` defaults to the registry in the settings' data dir."""
    services = services or Services.from_settings()
    documents = documents or documents_registry(services)
    builder = StateGraph(IngestState, context_schema=IngestContext, input_schema=IngestInput)
    builder.add_node("plan", make_plan(services))
    builder.add_node("document", make_document(services, documents))
    builder.add_node("summarize", summarize)
    builder.add_node("schedule_enrichment", make_schedule_ingest_enrichment(services))
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", make_fan_out(services), ["document"])
    builder.add_edge("document", "summarize")
    builder.add_edge("summarize", "schedule_enrichment")
    builder.add_edge("schedule_enrichment", END)
    graph = builder.compile(checkpointer=resolve_checkpointer(services, checkpointer), name=name)
    graph.documents = documents  # type: ignore[attr-defined]  # for callers that delete documents
    return graph
