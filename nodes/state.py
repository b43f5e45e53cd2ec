"""State and per-run context of the chat and search graphs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict  # LangServe needs typing_extensions' TypedDict on Python 3.11

from hippograph.stores.models import SearchHit
from hippograph.stores.preferences.base import PreferenceHit
from hippograph.stores.recall_config import RecallConfig


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer for keys that parallel nodes write at once (timings)."""
    return {**(left or {}), **(right or {})}


class ChatState(TypedDict, total=False):
    """What flows through a chat (or search) turn. Only `messages` (or `query`) is needed as input."""

    messages: Annotated[list[AnyMessage], add_messages]
    query: str
    """The text to search with: the last human message, or given directly to the search graph."""
    query_vector: list[float]
    """The query's embedding, computed once and reused by rerank (MMR) and ingest (the turn's own vector)."""
    user_id: str
    read_cube_ids: list[str]
    shared_cubes: dict[str, str]
    """Readable cubes owned by someone else -> their owner: recall labels their memories as untrusted."""
    write_cube_id: str
    session_id: str
    candidates: list[SearchHit]
    """Everything recall found, with per-signal scores, before fusion."""
    memories: list[SearchHit]
    """Fused, ranked, thresholded memories: what the answer may cite."""
    preferences: list[PreferenceHit]
    references: list[dict[str, Any]]
    """`[n]` citations of the answer mapped to memory ids."""
    answer: str
    written_ids: list[str]
    """Ids of the memories this turn wrote (stable forever)."""
    job_id: str
    timings: Annotated[dict[str, float], merge_dicts]
    """Per-node wall time in milliseconds."""
    dropped: list[dict[str, Any]]
    """Threshold audit: id, score and why each candidate was dropped."""


class ChatInput(TypedDict, total=False):
    """What a caller passes in: new messages, or a bare query for the search graph."""

    messages: list[AnyMessage]
    query: str


class SearchOutput(TypedDict, total=False):
    """What the search graph returns: the ranked memories and their audit, not its working channels (the
    query vector, resolved cube ids), which stay inside the run."""

    query: str
    candidates: list[SearchHit]
    memories: list[SearchHit]
    preferences: list[PreferenceHit]
    dropped: list[dict[str, Any]]
    timings: Annotated[dict[str, float], merge_dicts]


class ChatOutput(TypedDict, total=False):
    """What a chat turn returns to callers, Studio and parent graphs: the conversation, the answer with its
    citations and memories, and what the turn wrote."""

    messages: Annotated[list[AnyMessage], add_messages]
    answer: str
    references: list[dict[str, Any]]
    memories: list[SearchHit]
    preferences: list[PreferenceHit]
    written_ids: list[str]
    job_id: str
    dropped: list[dict[str, Any]]
    timings: Annotated[dict[str, float], merge_dicts]


@dataclass(kw_only=True)
class ChatContext:
    """Per-run settings (`graph.invoke(..., context=ChatContext(user_id="ana"))`)."""

    user_id: str = "default"
    """Whose memory this turn reads and writes. Interfaces set it from the caller's identity."""
    cube_ids: list[str] | None = None
    """Cubes to read (must be readable by the user); None = every cube the user may read."""
    write_cube_id: str | None = None
    """Cube that receives this turn's memory; None = the user's default cube."""
    session_id: str | None = None
    """Conversation session; None = the thread id."""
    top_k: int = 10
    threshold: float = 0.0
    """Relevance floor relative to the best hit (0 keeps everything up to top_k)."""
    min_keep: int = 3
    mode: Literal["fast", "fine"] = "fast"
    ingest: bool = True
    """Write the turn into memory (the deferred ingest node). False for read-only turns."""
    recall: RecallConfig | None = None
    """Recall tuning for this run; None = `settings.recall` (the deployment's, by default the product's)."""
    as_of: float | None = None
    """Reference time of the question (epoch seconds; None = now): the query's "last year" is relative to it, and
    when set recall answers what was true then (time-travel search over `valid_from`/`valid_to`)."""
