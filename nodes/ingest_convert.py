"""convert: turn one source (file, raw text or message list) into Markdown (or turns), with a fingerprint.

Files go through markitdown (pdf, docx, pptx, xlsx, html, csv, json, ...); Markdown and plain text are read as
they are (UTF-8, else Windows-1252 / Latin-1 with a warning), so chunk offsets point into the file's text. An
unchanged document (same fingerprint as the registered version) stops here with status `unchanged`. Files
hippograph does not take (binary of an unsupported type, empty, over `ingest_max_bytes`) end with status
`skipped` and the reason; missing, unreadable, encrypted or corrupt ones with status `error`. It never raises.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.ingest_state import DocState, IngestContext
from hippograph.nodes.turns import to_turn
from hippograph.stores.documents import DocumentRegistry
from hippograph.stores.services import Services
from hippograph.stores.write import stable_id

#: Read directly as UTF-8 (offsets stay file offsets).
TEXT_EXTENSIONS = {".md", ".markdown", ".txt", ".text", ".rst", ".log"}
#: Converted by markitdown.
MARKITDOWN_EXTENSIONS = {".pdf", ".docx", ".pptx", ".xlsx", ".xls", ".html", ".htm", ".csv", ".json", ".xml",
                         ".epub", ".ipynb", ".msg"}
_OFFICE_PARTS = {".docx": "word/document.xml", ".pptx": "ppt/presentation.xml", ".xlsx": "xl/workbook.xml"}
_converter: Any = None
_converter_lock = threading.Lock()


class ConversionError(Exception):
    """A document that cannot be ingested; the message says why, for the user."""


class SkippedFile(ConversionError):
    """A file hippograph does not take (unsupported binary type, empty, too large): reported, not a failure."""


def _markitdown() -> Any:
    """One shared MarkItDown (its setup loads the magika file-type model: ~1 s, so never per thread)."""
    global _converter
    with _converter_lock:
        if _converter is None:
            from markitdown import MarkItDown

            _converter = MarkItDown(enable_plugins=False)
        return _converter


#: Control characters a text file may contain (tab, newlines, form feed); many others mean binary data.
_TEXT_CONTROLS = {9, 10, 12, 13}


def looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for byte in head if byte < 32 and byte not in _TEXT_CONTROLS)
    return controls > len(head) // 100  # more than 1% control bytes: not text in any 8-bit encoding


def decode_text(data: bytes) -> tuple[str, str | None]:
    """A text file's characters: UTF-8 (BOM allowed), else Windows-1252 (Latin-1's superset, what Western 8-bit
    text files almost always are), else Latin-1 (any byte). Returns the text and a warning when not UTF-8."""
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        where = exc.start
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return text, f"not UTF-8 (byte {where}): read as {encoding}"
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def file_to_markdown(path: Path, data: bytes, warnings: list[str] | None = None) -> str:
    """Markdown for a file's bytes. Raises `SkippedFile` (not ours to take) or `ConversionError` (broken), with
    a user-facing reason; appends to `warnings` what the user should know (a guessed text encoding)."""
    ext = path.suffix.lower()
    if ext == ".pdf" and b"/Encrypt" in data[-65536:] + data[:65536]:
        raise ConversionError("encrypted PDF: decrypt it first")
    if ext in TEXT_EXTENSIONS or (ext not in MARKITDOWN_EXTENSIONS and not looks_binary(data)):
        if looks_binary(data):
            raise ConversionError(f"a {ext} file with binary content (NUL or control bytes): corrupt?")
        text, warning = decode_text(data)
        if warning and warnings is not None:
            warnings.append(warning)
        return text
    if ext not in MARKITDOWN_EXTENSIONS:
        raise SkippedFile(f"unsupported file type {ext or '(no extension)'} (binary)")
    # markitdown falls back to other converters (even plain text) when the right one fails: check first.
    if ext in _OFFICE_PARTS:
        if data[:4] == b"\xd0\xcf\x11\xe0":
            raise ConversionError(f"encrypted (password-protected) or legacy {ext} file")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile:
            raise ConversionError(f"corrupt {ext} file: not a valid zip archive") from None
        if _OFFICE_PARTS[ext] not in names:
            raise ConversionError(f"corrupt {ext} file: {_OFFICE_PARTS[ext]} is missing")
    if ext == ".pdf" and not data.lstrip()[:5] == b"%PDF-":
        raise ConversionError("not a PDF file (no %PDF header)")
    try:
        result = _markitdown().convert_local(str(path))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"cannot convert {ext} file (corrupt or unsupported?): {reason[:300]}") from None
    markdown = result.markdown or ""
    if ext == ".pdf" and markdown.lstrip().startswith("%PDF"):
        raise ConversionError("corrupt PDF: the PDF reader could not parse it")
    if not markdown.strip():
        raise ConversionError(f"no text could be extracted from this {ext} file (scanned, encrypted or empty?)")
    return markdown


def normalise_turns(source: dict[str, Any]) -> list[dict[str, Any]]:
    """Message dicts or LangChain messages -> turns (speaker, role, text, timestamp, dia_id, extra), read by the
    one turn model (`nodes.turns.to_turn`: every accepted message shape)."""
    turns: list[dict[str, Any]] = []
    for position, message in enumerate(source.get("messages") or []):
        if not isinstance(message, BaseMessage | dict):
            raise ConversionError(f"message {position} is a {type(message).__name__}, not a dict or message")
        turn = to_turn(message)
        turns.append({
            "speaker": turn.speaker if turn.speaker else "unknown",
            "role": turn.role,
            "text": turn.text,
            "timestamp": turn.timestamp or source.get("session_date"),
            "dia_id": turn.ref or str(position),
            "position": position,
            "extra": {k: v for k, v in turn.extra.items() if k not in ("position", "index")},
        })
    return turns


def fingerprint(data: bytes, chunking: dict[str, Any]) -> str:
    """The content's sha256 plus the chunking settings (changed settings re-chunk the document)."""
    digest = hashlib.sha256(data)
    shape = {k: v for k, v in chunking.items() if k != "batch"}  # the write step size changes no chunk
    digest.update(json.dumps(shape, sort_keys=True).encode())
    return digest.hexdigest()


def make_convert(services: Services, documents: DocumentRegistry) -> Node:
    max_bytes = services.settings.ingest_max_bytes

    def describe(state: DocState) -> dict[str, Any]:
        source = state["source"]
        kind = source["kind"]
        if kind == "file":
            path = Path(source["path"]).expanduser().resolve()
            return {"kind": kind, "doc_key": str(path), "title": path.name, "path": str(path)}
        if kind == "text":
            text = source["text"]
            name = source.get("name") or "text:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
            first = next((ln.strip("# ").strip() for ln in text.splitlines() if ln.strip()), "text")
            return {"kind": kind, "doc_key": name, "title": source.get("title") or first[:80], "path": None}
        conversation = str(source.get("conversation_id") or "conversation")
        session = str(source.get("session_id") or "session")
        title = source.get("title") or f"{conversation} {session}" + (
            f" ({source['session_date']})" if source.get("session_date") else "")
        return {"kind": kind, "doc_key": f"conversation:{conversation}:{session}", "title": title, "path": None}

    @timed("convert")
    def convert(state: DocState, runtime: Runtime[IngestContext]) -> dict[str, Any]:
        source, cube = state["source"], state["cube_id"]
        try:
            info = describe(state)
        except Exception as exc:  # a malformed source dict
            return {"kind": source.get("kind", "?"), "doc_key": str(source)[:80], "title": str(source)[:80],
                    "status": "error", "error": f"bad source: {exc}"}
        info["doc_id"] = stable_id(cube, "document", info["doc_key"])
        try:
            update: dict[str, Any] = {}
            if info["kind"] == "file":
                path = Path(info["path"])
                if not path.is_file():
                    raise ConversionError("no such file" if not path.exists() else "not a regular file")
                size = path.stat().st_size
                if size > max_bytes:
                    raise SkippedFile(f"{size:,} bytes is over the {max_bytes:,}-byte limit (ingest_max_bytes)")
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    raise ConversionError(f"unreadable: {exc.strerror or exc}") from None
                if not data.strip():
                    raise SkippedFile("empty file")
                update["size"] = len(data)
                update["fingerprint"] = fingerprint(data, state["chunking"])
            elif info["kind"] == "text":
                data = str(source["text"]).encode("utf-8", "surrogatepass")
                if not data.strip():
                    raise ConversionError("empty text")
                update["size"] = len(data)
                update["fingerprint"] = fingerprint(data, state["chunking"])
            else:
                turns = normalise_turns(source)
                if not any(t["text"].strip() for t in turns):
                    raise ConversionError("a conversation with no messages")
                data = json.dumps([source.get("session_date"), turns], sort_keys=True, default=str).encode()
                update |= {"turns": turns, "size": len(data), "fingerprint": fingerprint(data, state["chunking"])}
            previous = documents.get(cube, info["doc_key"])
            if previous is not None and previous.status == "active" and previous.fingerprint == update["fingerprint"]:
                return {**info, **update, "status": "unchanged"}
            update["status"] = "changed" if previous is not None and previous.status == "active" else "new"
            if info["kind"] == "file":
                warnings: list[str] = []
                update["markdown"] = file_to_markdown(Path(info["path"]), data, warnings)
                update["warnings"] = warnings
            elif info["kind"] == "text":
                update["markdown"] = str(source["text"])
            else:
                update["markdown"] = "\n".join(f"{t['speaker']}: {t['text']}" for t in update["turns"])
            return {**info, **update}
        except ConversionError as exc:
            return {**info, "status": "skipped" if isinstance(exc, SkippedFile) else "error", "error": str(exc)}

    return convert
