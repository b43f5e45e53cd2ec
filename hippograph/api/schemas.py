"""Request and response bodies of the REST and LangServe routes (one pydantic model each)."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import AnyMessage, BaseMessage
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from hippograph.memory import turn_messages
from hippograph.stores import limits
from hippograph.stores.errors import InvalidInputError
from hippograph.stores.limits import MAX_TEXT_CHARS, TOP_K_MAX, TOP_K_MIN
from hippograph.stores.models import MemoryItem, SearchHit, check_text
from hippograph.stores.outbox import JobStatus
from hippograph.stores.registry import Access, CubeAccess, User

#: Largest page of a listing.
MAX_PAGE = 500

class Reason(BaseModel):
    error: str
    reason: str
    status: int


#: The message types a chat turn may carry (tool messages belong to an agent's loop, not to a memory turn).
TURN_MESSAGE_TYPES = frozenset({"human", "ai", "system"})
_MESSAGE: TypeAdapter[AnyMessage] = TypeAdapter(AnyMessage)


class ChatRequest(BaseModel):
    """LangServe chat input: the new message(s) of this turn."""

    messages: list[AnyMessage] = Field(min_length=1, max_length=limits.MAX_MESSAGES)

    @field_validator("messages", mode="before")
    @classmethod
    def _shape_ok(cls, messages: Any) -> Any:
        # LangChain's message validators raise TypeError/KeyError (not validation errors) on some malformed
        # messages, which would be 500s: check each one here and turn any failure into a reason.
        if not isinstance(messages, list):
            raise InvalidInputError("`messages` must be a list of message objects")
        for message in messages:
            if isinstance(message, BaseMessage):
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if not isinstance(kind, str) or kind not in TURN_MESSAGE_TYPES:
                raise InvalidInputError(f"each message is an object with `type` one of {sorted(TURN_MESSAGE_TYPES)}")
            try:
                _MESSAGE.validate_python(message)
            except (ValidationError, TypeError, KeyError, ValueError) as exc:
                raise InvalidInputError(f"invalid {message['type']} message: {str(exc)[:200]}") from None
        return messages

    @field_validator("messages")
    @classmethod
    def _turn_ok(cls, messages: list[AnyMessage]) -> list[AnyMessage]:
        turn_messages(messages)  # checked here, so a bad turn is a 422 before any stream starts
        return messages


class SearchRequest(BaseModel):
    """LangServe search input: the query text."""

    query: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)

    @field_validator("query")
    @classmethod
    def _query_ok(cls, query: str) -> str:
        return check_text(query, "query")


class SearchResult(BaseModel):
    query: str = ""
    memories: list[SearchHit] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str
    name: str = ""
    is_admin: bool = False


class UserWithKey(BaseModel):
    user: User
    api_key: str


class KeyOut(BaseModel):
    api_key: str


class RevokeKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=1, max_length=512)


class Me(BaseModel):
    user: User
    cubes: list[CubeAccess]


class NewCube(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cube_id: str
    name: str = ""


class NewShare(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str
    access: Access = Access.READ


class Message_(BaseModel):
    role: Literal["human", "user", "ai", "assistant", "system"] = "human"
    content: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    name: str | None = Field(default=None, max_length=200)
    """Who said it (the memory's speaker; default: the caller for user messages, else the role)."""
    id: str | None = Field(default=None, max_length=200)
    """The message id: re-sending the same message writes the same memory."""
    timestamp: str | float | None = None
    """When it was said (ISO 8601, epoch seconds or a date as people write it); default: now."""


class NewMemory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    messages: list[Message_] | None = Field(default=None, max_length=limits.MAX_MESSAGES)
    cube_id: str | None = None
    session_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _metadata_ok(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        return limits.check_metadata(metadata)


class MemoryIds(BaseModel):
    ids: list[str]


class MemoryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    tags: list[str] | None = Field(default=None, max_length=limits.MAX_TAGS)
    metadata: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_ok(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if metadata is None else limits.check_metadata(metadata)


class MemoryPage(BaseModel):
    items: list[MemoryItem]
    limit: int
    offset: int
    next_offset: int | None


class SearchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    cube_ids: list[str] | None = Field(default=None, max_length=limits.MAX_CUBE_IDS)
    top_k: int = Field(default=10, ge=TOP_K_MIN, le=TOP_K_MAX)
    threshold: float = Field(default=0.0, ge=limits.THRESHOLD_MIN, le=limits.THRESHOLD_MAX)


class ChatTurn(BaseModel):
    """One chat turn: `message` (a text) or `messages` (the LangServe `/chat/invoke` shape), exactly one."""

    model_config = ConfigDict(extra="forbid")
    message: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT_CHARS)
    messages: list[Message_] | None = Field(default=None, min_length=1, max_length=limits.MAX_MESSAGES)
    thread_id: str | None = Field(default=None, max_length=limits.MAX_THREAD_ID_CHARS)
    cube_ids: list[str] | None = Field(default=None, max_length=limits.MAX_CUBE_IDS)
    top_k: int | None = Field(default=None, ge=TOP_K_MIN, le=TOP_K_MAX)

    @field_validator("thread_id")
    @classmethod
    def _thread_ok(cls, thread_id: str | None) -> str | None:
        return limits.check_thread_id(thread_id)

    @model_validator(mode="after")
    def _one_of(self) -> ChatTurn:
        if (self.message is None) == (self.messages is None):
            raise InvalidInputError("give exactly one of `message` (a text) or `messages` (a list)")
        return self

    def turn(self) -> str | list[dict[str, str]]:
        """What `Memory.chat` takes: the text, or the messages as role/content dicts."""
        if self.message is not None:
            return self.message
        return [{"role": m.role, "content": m.content} for m in self.messages or []]


class TextDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    name: str | None = Field(default=None, max_length=256)
    title: str | None = Field(default=None, max_length=512)


class DocumentsIn(BaseModel):
    """Documents to ingest. Server-side file paths are never accepted over HTTP: send the text."""

    model_config = ConfigDict(extra="forbid")
    texts: list[TextDoc] = Field(default_factory=list, max_length=100)
    conversations: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    cube_id: str | None = None
    mode: Literal["fast", "fine"] = "fast"


class IngestOut(BaseModel):
    results: list[dict[str, Any]] = Field(default_factory=list)
    summary: dict[str, Any] = Field(default_factory=dict)


class DocumentOut(BaseModel):
    doc_key: str
    doc_id: str
    title: str
    kind: str
    path: str | None = None
    chunks: int
    updated_at: float


class JobOut(BaseModel):
    id: str
    kind: str
    status: JobStatus
    attempts: int
    last_error: str
    created_at: float
    updated_at: float
    cube_id: str | None = None
    memory_ids: list[str] = Field(default_factory=list)
