"""State and context of the ingest graph (kept in `nodes/` so the node modules and `graphs/ingest.py` share it)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from typing_extensions import TypedDict

from hippograph.nodes.state import merge_dicts
from hippograph.stores.models import MemoryItem
from hippograph.stores.tree.base import Edge


@dataclass(kw_only=True)
class IngestContext:
    """Per-run settings (`graph.invoke(input, context=IngestContext(user_id="ana", cube_id="ana.docs"))`)."""

    user_id: str = "default"
    cube_id: str | None = None
    """Cube that receives the memories (must be writable by the user); None = the user's default cube."""
    mode: Literal["fast", "fine"] = "fast"
    """`fast`: each chunk is a memory; `fine`: an LLM (services.chat_model) also extracts facts per chunk."""
    recursive: bool = False
    """Descend into sub-directories of directory paths."""
    chunker: Literal["recursive", "sentence", "langchain"] | None = None
    """None = settings.chunker."""
    chunk_tokens: int | None = None
    chunk_overlap: int | None = None


class IngestInput(TypedDict, total=False):
    """What a caller passes in. Any mix of the three lists; each entry becomes one document."""

    paths: list[str]
    """Files or directories on disk (pdf, docx, pptx, xlsx, html, md, txt, csv, json, ...)."""
    texts: list[Any]
    """Raw text: a string, or `{"text": ..., "name": ..., "title": ...}` (`name` keys the document for
    re-ingestion; default: a hash of the text)."""
    conversations: list[dict[str, Any]]
    """Message lists, one session each: `{"conversation_id", "session_id", "session_date", "messages": [
    {"speaker"|"role", "text"|"content", "id"|"dia_id", "timestamp", ...} | BaseMessage]}`."""


class IngestState(IngestInput, total=False):
    user_id: str
    cube_id: str
    sources: list[dict[str, Any]]
    """One entry per document to process (what `plan` fans out with `Send`)."""
    results: Annotated[list[dict[str, Any]], operator.add]
    """One report per document: status, counts, error, per-stage timings."""
    summary: dict[str, Any]
    timings: Annotated[dict[str, float], merge_dicts]


class DocOutput(TypedDict, total=False):
    results: Annotated[list[dict[str, Any]], operator.add]


class DocState(TypedDict, total=False):
    """One document's trip through convert -> chunk -> extract -> dedup -> write."""

    source: dict[str, Any]
    user_id: str
    cube_id: str
    mode: str
    chunking: dict[str, Any]
    # convert
    kind: str
    doc_key: str
    doc_id: str
    title: str
    path: str | None
    fingerprint: str
    size: int
    markdown: str
    turns: list[dict[str, Any]]
    """Conversation documents: normalised turns (speaker, text, timestamp, dia_id, session_id ...)."""
    status: str
    """`new`, `changed`, `unchanged` or `error`."""
    error: str
    # chunk
    chunks: list[dict[str, Any]]
    sections: list[dict[str, Any]]
    # extract
    structure: list[MemoryItem]
    chunk_items: list[MemoryItem]
    derived: dict[int, list[MemoryItem]]
    warnings: list[str]
    # dedup
    plan: dict[str, Any]
    # write
    edges: list[Edge]
    results: Annotated[list[dict[str, Any]], operator.add]
    timings: Annotated[dict[str, float], merge_dicts]
