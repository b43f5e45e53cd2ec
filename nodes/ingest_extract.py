"""extract: chunks -> memory items, plus the document's structure (document node -> section nodes).

- fast mode (rules): each chunk is one memory whose key is its heading path (`Title › Chapter › Section`); a
  conversation turn is one memory `Speaker: text` keyed by speaker and date, with speaker, timestamp and
  session on the memory itself (session_id, turn_index, metadata, source ref).
- fine mode (when `services.chat_model` is set): additionally, the chat model extracts standalone facts from
  each chunk with structured output; each fact hangs under its chunk (PARENT) with the chunk's source ref.

Structure nodes (document, sections, conversation sessions) are TOPIC memories with a zero vector: found by
full-text search and graph expansion, never crowding vector search. Ids are deterministic (`stable_id`):
document, section and chunk ids derive from the cube, the document key,
the heading path or the chunk's content hash, so replays write the same ids.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.ingest_state import DocState, IngestContext
from hippograph.nodes.turns import Turn, TurnKey, parse_time, turn_memories
from hippograph.stores.models import MemoryItem, MemoryType, SourceRef, content_hash
from hippograph.stores.services import Services
from hippograph.stores.write import stable_id

SEP = " › "
_FACTS_PROMPT = (
    "Extract the standalone facts a reader would want to remember from this document excerpt. Each fact is one "
    "self-contained sentence that names its subject (no pronouns referring outside the fact). Return at most 8."
)


class ExtractedFacts(BaseModel):
    """Structured output of fine-mode extraction."""

    facts: list[str] = Field(default_factory=list, description="Standalone, self-contained facts.")


def section_id(cube: str, doc_key: str, path: list[str]) -> str:
    return stable_id(cube, "section", doc_key, SEP.join(path))


def _chunk_ids(cube: str, doc_key: str, hashes: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    ids = []
    for digest in hashes:
        ids.append(stable_id(cube, "chunk", doc_key, digest, str(seen[digest])))
        seen[digest] += 1
    return ids


def document_items(state: DocState) -> tuple[list[MemoryItem], list[MemoryItem]]:
    """(structure: document node + section nodes, chunk memories in order) for a file or text document."""
    user, cube, doc_key, doc_id = state["user_id"], state["cube_id"], state["doc_key"], state["doc_id"]
    title, path = state["title"], state.get("path")
    base_ref = {"doc_key": doc_key, "path": path, "title": title}
    tags = ["document"] + ([path.rsplit(".", 1)[-1].lower()] if path and "." in path else [])
    doc_node = MemoryItem(
        id=doc_id, user_id=user, cube_id=cube, text=f"{title}\n{path or doc_key}", key="document",
        tags=tags, memory_type=MemoryType.TOPIC, source="document",
        source_refs=[SourceRef(kind="document", ref=doc_id, extra=base_ref)],
        metadata={"ingest_role": "document", "doc_id": doc_id},
    )
    structure = [doc_node]
    known: set[tuple[str, ...]] = set()
    needed = {tuple(s["heading_path"]) for s in state.get("sections", [])}
    needed |= {tuple(c["heading_path"]) for c in state["chunks"]}
    spans = {tuple(s["heading_path"]): s for s in state.get("sections", [])}
    for full in sorted(needed, key=lambda p: (len(p), p)):
        for depth in range(1, len(full) + 1):
            prefix = full[:depth]
            if prefix in known:
                continue
            known.add(prefix)
            span = spans.get(prefix, {})
            structure.append(MemoryItem(
                id=section_id(cube, doc_key, list(prefix)), user_id=user, cube_id=cube,
                text=SEP.join([title, *prefix]), key="section", tags=tags, memory_type=MemoryType.TOPIC,
                source="document", parent_id=section_id(cube, doc_key, list(prefix[:-1])) if depth > 1 else doc_id,
                source_refs=[SourceRef(kind="document", ref=doc_id, extra={
                    **base_ref, "heading_path": list(prefix), "start": span.get("start"), "end": span.get("end")})],
                metadata={"ingest_role": "section", "doc_id": doc_id},
            ))
    hashes = [content_hash(c["text"]) for c in state["chunks"]]
    chunk_items = []
    for chunk, digest, memory_id in zip(state["chunks"], hashes, _chunk_ids(cube, doc_key, hashes), strict=True):
        heading = chunk["heading_path"]
        chunk_items.append(MemoryItem(
            id=memory_id, user_id=user, cube_id=cube, text=chunk["text"], key=SEP.join([title, *heading]),
            tags=tags, memory_type=MemoryType.LONG_TERM, source="document", content_hash=digest,
            session_id=doc_id, turn_index=chunk["index"],
            parent_id=section_id(cube, doc_key, heading) if heading else doc_id,
            source_refs=[SourceRef(kind="document", ref=doc_id, extra={
                **base_ref, "chunk_index": chunk["index"], "heading_path": heading, "start": chunk["start"],
                "end": chunk["end"], "offsets": "markdown", "tokens": chunk.get("tokens")})],
            metadata={"ingest_role": "chunk", "doc_id": doc_id},
        ))
    return structure, chunk_items


def conversation_items(state: DocState, turn_key: TurnKey = "full") -> tuple[list[MemoryItem], list[MemoryItem]]:
    """(structure: the session node, one memory per turn) for a conversation session. Turns go through the one
    turn model (`nodes/turns.py`): the same key, time, hash and id rules as every other write path. The turns'
    session id is `<conversation id>:<session id>` when a conversation id is given (sessions of different
    conversations in one cube never become neighbours), else the session id."""
    user, cube, doc_id = state["user_id"], state["cube_id"], state["doc_id"]
    source = state["source"]
    conversation = str(source.get("conversation_id") or "conversation")
    session = str(source.get("session_id") or "session")
    session_key = f"{source['conversation_id']}:{session}" if source.get("conversation_id") else session
    session_date = source.get("session_date")
    session_node = MemoryItem(
        id=doc_id, user_id=user, cube_id=cube, text=f"Conversation {conversation}, {session}"
        + (f" on {session_date}" if session_date else ""), key="session", tags=["conversation"],
        memory_type=MemoryType.TOPIC, source="conversation", session_id=session_key,
        occurred_at=parse_time(session_date),
        source_refs=[SourceRef(kind="session", ref=session, extra={"conversation_id": conversation,
                                                                   "session_date": session_date})],
        metadata={"ingest_role": "session", "conversation_id": conversation, "session_date": session_date},
    )
    turns = [Turn(text=t["text"], speaker=t["speaker"], role=t.get("role", "user"), ref=t["dia_id"],
                  timestamp=t.get("timestamp"), extra=dict(t.get("extra") or {})) for t in state["chunks"]]
    items = turn_memories(turns, user_id=user, cube_id=cube, session_id=session_key, session_date=session_date,
                          source="conversation", parent_id=doc_id, context=turn_key,
                          metadata={"conversation_id": conversation, "ingest_role": "turn", "doc_id": doc_id})
    return [session_node], items


def extract_facts(services: Services, state: DocState, chunk_items: list[MemoryItem]) -> dict[int, list[MemoryItem]]:
    """Fine mode: LLM facts per chunk, as memories under the chunk (PARENT), with the chunk's source refs."""
    assert services.chat_model is not None
    structured = services.chat_model.with_structured_output(ExtractedFacts)
    prompts = [[SystemMessage(_FACTS_PROMPT), HumanMessage(f"Document: {item.key}\n\n{item.text}")]
               for item in chunk_items]
    outputs = structured.batch(prompts, config={"max_concurrency": 4})  # type: ignore[arg-type]
    derived: dict[int, list[MemoryItem]] = {}
    for index, (item, output) in enumerate(zip(chunk_items, outputs, strict=True)):
        facts = output.facts if isinstance(output, ExtractedFacts) else ExtractedFacts.model_validate(output).facts
        derived[index] = [
            MemoryItem(
                id=stable_id(item.id, "fact", str(n)), user_id=item.user_id, cube_id=item.cube_id, text=fact,
                key=item.key, tags=[*item.tags, "fact"], memory_type=MemoryType.LONG_TERM, source=item.source,
                parent_id=item.id, session_id=item.session_id, source_refs=item.source_refs,
                metadata={**item.metadata, "ingest_role": "fact", "chunk_id": item.id},
            )
            for n, fact in enumerate(f.strip() for f in facts) if fact
        ]
    return derived


def make_extract(services: Services) -> Node:
    @timed("extract")
    def extract(state: DocState, runtime: Runtime[IngestContext]) -> dict[str, Any]:
        if state["kind"] == "conversation":
            structure, chunk_items = conversation_items(state, services.settings.turn_key)
        else:
            structure, chunk_items = document_items(state)
        # Structure nodes are reached by full-text search (their heading text) and by graph expansion (the
        # parents of hits), not by vector similarity: a zero vector keeps a heading from outranking the very
        # chunk that answers a question about it.
        for node in structure:
            node.embedding = [0.0] * services.dimension
        derived: dict[int, list[MemoryItem]] = {}
        warnings: list[str] = list(state.get("warnings") or [])  # convert's (e.g. a guessed text encoding)
        if state.get("mode") == "fine" and services.chat_model is not None and state["kind"] != "conversation":
            try:
                derived = extract_facts(services, state, chunk_items)
            except Exception as exc:  # the chunks are still remembered; say why facts are missing
                warnings.append(f"fine extraction failed, kept chunks only: {type(exc).__name__}: {exc}"[:300])
        return {"structure": structure, "chunk_items": chunk_items, "derived": derived, "warnings": warnings}

    return extract
