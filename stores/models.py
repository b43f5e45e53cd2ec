"""The domain model: a memory item and a scored search hit."""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hippograph.stores.errors import InvalidInputError
from hippograph.stores.limits import MAX_TEXT_CHARS as MAX_TEXT_CHARS  # re-exported; its one home is stores/limits.py
from hippograph.stores.limits import has_visible_char

#: Ids of users, cubes, sessions: safe to place anywhere (Cypher params, Milvus filters, URLs). Always applied with
#: `fullmatch` (a `$` anchor would let a trailing newline through).
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
#: User ids are shorter, so that the user's default cube id (`<user>.default`) is always a valid id too.
MAX_USER_ID_CHARS = 128 - len(".default")


class MemoryType(StrEnum):
    WORKING = "WorkingMemory"
    LONG_TERM = "LongTermMemory"
    USER = "UserMemory"
    TOPIC = "TopicMemory"
    """A topic node of the tree: facts hang under it by PARENT edges."""


class MemoryStatus(StrEnum):
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    DELETED = "deleted"


def new_id() -> str:
    """A fresh memory id: a UUID4 string, stable for the memory's whole life."""
    return str(uuid.uuid4())


def now() -> float:
    return time.time()


def normalise_text(text: str) -> str:
    """Unicode-normalised, whitespace-collapsed, lower-cased text: the basis of the content hash."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def content_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def check_id(value: str, what: str = "id") -> str:
    """Validate a user/cube/session id against `ID_PATTERN` (why: these reach Cypher and Milvus filters)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidInputError(
            f"invalid {what} {value!r}: use 1-128 characters from letters, digits and _ . : @ -"
        )
    return value


def check_text(text: Any, what: str = "text") -> str:
    """Validate memory text: a str of valid UTF-8 no longer than `MAX_TEXT_CHARS`, with at least one visible
    character (only NUL, control, zero-width or space characters is empty: nobody could read or find it)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{what} is not valid UTF-8: {exc}") from None
    if not isinstance(text, str):
        raise InvalidInputError(f"{what} must be a string, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{what} contains unpaired surrogates (not valid UTF-8)") from None
    if not text.strip():
        raise InvalidInputError(f"{what} is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInputError(
            f"{what} is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,} "
            "(ingest long text as a document so it is chunked)"
        )
    if not has_visible_char(text):
        raise InvalidInputError(f"{what} has only control, zero-width or space characters")
    return text


class SourceRef(BaseModel):
    """Where a memory came from: a chat message, a document chunk, a dataset turn."""

    model_config = ConfigDict(extra="allow")

    kind: str = "message"
    """`message`, `document`, `turn`, `memory` (derived from other memories) ..."""
    ref: str = ""
    """The message id, document id, dia_id or memory id."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Kind-specific details: chunk index, heading path, char offsets, speaker, timestamp."""


class MemoryItem(BaseModel):
    """One memory in tree memory. Its `id` never changes, whatever enrichment does later."""

    model_config = ConfigDict(validate_assignment=False)

    id: str = Field(default_factory=new_id)
    user_id: str
    cube_id: str
    text: str
    key: str = ""
    """A short title; indexed with the text (carries speaker, date, heading path)."""
    tags: list[str] = Field(default_factory=list)
    memory_type: MemoryType = MemoryType.LONG_TERM
    source: str = "conversation"
    """What produced it: `conversation`, `document`, `enrichment`, `import`, `api`."""
    source_refs: list[SourceRef] = Field(default_factory=list)
    session_id: str | None = None
    turn_index: int | None = None
    """Position of the turn inside its session: `NEXT` edges and adjacent-turn neighbours follow it."""
    parent_id: str | None = None
    """The topic (or document section) this memory hangs under."""
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)
    valid_from: float | None = None
    valid_to: float | None = None
    """Set when a newer version supersedes this one."""
    occurred_at: float | None = None
    """When what it records happened or was said (epoch seconds; a turn's timestamp, else its session date, else
    when it was written: `nodes/turns.py`). Indexed, for time-scoped recall; None for non-events (documents)."""
    status: MemoryStatus = MemoryStatus.ACTIVE
    confidence: float = 1.0
    content_hash: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    embedding: list[float] | None = Field(default=None, exclude=True, repr=False)

    @field_validator("text")
    @classmethod
    def _text_ok(cls, v: str) -> str:
        return check_text(v)

    @field_validator("user_id", "cube_id")
    @classmethod
    def _ids_ok(cls, v: str) -> str:
        return check_id(v)

    def model_post_init(self, __context: Any) -> None:
        if not self.content_hash:
            self.content_hash = content_hash(self.text)
        if self.valid_from is None:
            self.valid_from = self.created_at

    @property
    def index_text(self) -> str:
        """What lexical and dense indexes see: key, text and tags together."""
        parts = [self.key, self.text, " ".join(self.tags)]
        return "\n".join(p for p in parts if p)


class SearchHit(BaseModel):
    """A memory found by a search, with the score of every retrieval signal that found it."""

    item: MemoryItem
    score: float = 0.0
    """The fused score used for ordering (higher is better)."""
    scores: dict[str, float] = Field(default_factory=dict)
    """Per signal: `vector` (cosine), `bm25`, `graph`, `rrf`, `rerank`, `recency` ..."""
    ranks: dict[str, int] = Field(default_factory=dict)
    """Per signal: 0-based rank of this memory in that signal's list."""
    shared_by: str | None = None
    """The owner of the memory's cube when that is another user (a cube shared with the caller): its text is
    someone else's content, shown to the answer as untrusted, never as instructions."""

    @property
    def id(self) -> str:
        return self.item.id

    @property
    def text(self) -> str:
        return self.item.text

    @property
    def source_refs(self) -> list[SourceRef]:
        return self.item.source_refs
