"""The conversation turn model: one way to turn a conversation turn into a memory, for every write path.

The chat graph's ingest node, `Memory.add` (text or messages), `Memory.ingest(conversations=...)` (and so REST
and MCP, which call those) and the `BaseStore` adapter all go through `turn_memories`, so a turn stored by any of
them gets the same key, text, time, tags, hash and neighbours — and the same recall.

Accepted message shapes (`to_turn`):

- LangChain messages (`HumanMessage`, `AIMessage`, ...): speaker = `name`, else the user id for a human
  message (when the caller knows it), else the role (`human` -> `user`, `ai` -> `assistant`); ref = `id`;
  time = `timestamp` in `additional_kwargs` or `response_metadata`; other scalar `additional_kwargs` (such as
  `blip_caption`) are kept like a dict message's extra fields.
- OpenAI-style dicts: `{"role", "content", "name"?, "id"?, "timestamp"?}`.
- Dataset rows: `{"speaker", "text", "dia_id", "timestamp"?, "blip_caption"?}` (LoCoMo, LongMemEval).

A turn's time (`MemoryItem.occurred_at`, epoch seconds, indexed) is the message's own timestamp, else the session
date, else now. Timestamps may be epoch seconds, `datetime`s, ISO 8601 or free-form dates ("1:56 pm on 8 May,
2023", "2023/05/20 (Sat) 02:21"); naive times are UTC.

The key (indexed with the text, lexically and densely) carries who spoke, when, and the turn this one replies
to: `"Caroline on 1:56 pm on 8 May, 2023 | replying to Melanie: How was the support group?"`. A reply like
"Yes, last Friday!" is then findable by the words of the question it answers and by its date.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from langchain_core.messages import BaseMessage

from hippograph.nodes.scope import message_text
from hippograph.stores.errors import InvalidInputError
from hippograph.stores.models import MemoryItem, MemoryType, SourceRef, check_text, content_hash, now
from hippograph.stores.write import stable_id

#: What a turn memory's key carries: nothing, speaker and time, or also the turn it replies to (default).
TurnKey = Literal["none", "speaker_date", "full"]
TURN_KEYS: tuple[str, ...] = ("none", "speaker_date", "full")
#: Characters of the replied-to turn carried in a key.
REPLY_CHARS = 300
#: LangChain message types -> the role name a speaker-less turn is keyed by.
_ROLE_NAMES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_USER_ROLES = {"human", "user"}
_KNOWN_ROLES = {"user", "assistant", "system", "tool", "developer", "function"}


def speaker_of(item: MemoryItem) -> str | None:
    """Who said a turn memory (its source ref's `speaker`), or None for a memory that is no turn or whose
    speaker is only a role (user, assistant, ...)."""
    for ref in item.source_refs[:1]:
        speaker = ref.extra.get("speaker") if ref.kind == "turn" else None
        if isinstance(speaker, str) and speaker.strip() and speaker.lower() not in _KNOWN_ROLES | _USER_ROLES:
            return speaker
    return None


# -- time ---------------------------------------------------------------------------------------------------


def parse_time(value: Any) -> float | None:
    """Epoch seconds for a timestamp in any accepted form, or None when it is missing or unreadable."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        from dateutil import parser as dateparser

        # "(Sat)" and the word "on" confuse dateutil's fuzzy mode less when they are gone.
        cleaned = re.sub(r"\([A-Za-z]{2,9}\)|\bon\b", " ", text)
        try:
            parsed = dateparser.parse(cleaned, fuzzy=True, default=datetime(2000, 1, 1))
        except (ValueError, OverflowError):
            return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def format_time(ts: float) -> str:
    """How a time reads in a key: `1:56 pm on 8 May, 2023` (UTC), the way people date a conversation."""
    moment = datetime.fromtimestamp(ts, UTC)
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'am' if moment.hour < 12 else 'pm'} on {moment.day} " \
           f"{moment.strftime('%B')}, {moment.year}"


# -- turns --------------------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One turn of a conversation, whatever shape it came in."""

    text: str
    speaker: str
    role: str = "user"
    ref: str | None = None
    """The message id / dia_id: the stable part of the memory id and the source ref."""
    timestamp: Any = None
    """The turn's own time, as given (parsed by `parse_time`)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other scalar fields of a dict message (kept in metadata and the source ref)."""


def _timestamp_of(message: BaseMessage) -> Any:
    for meta in (message.additional_kwargs, message.response_metadata):
        if isinstance(meta, Mapping) and meta.get("timestamp") is not None:
            return meta["timestamp"]
    return None


def to_turn(message: BaseMessage | Mapping[str, Any] | str, *, user_name: str | None = None) -> Turn:
    """A message in any accepted shape (see the module docs) as a `Turn`. `user_name` names a user/human turn
    that carries no name of its own. Raises `InvalidInputError` for anything else."""
    if isinstance(message, str):
        return Turn(text=message, speaker=user_name or "user", role="user")
    if isinstance(message, BaseMessage):
        role = _ROLE_NAMES.get(message.type, message.type)
        speaker = message.name or (user_name if message.type == "human" and user_name else role)
        extra = {k: v for k, v in message.additional_kwargs.items()
                 if k != "timestamp" and isinstance(v, str | int | float | bool)}
        return Turn(text=message_text(message.content), speaker=str(speaker), role=role,
                    ref=str(message.id) if message.id else None, timestamp=_timestamp_of(message), extra=extra)
    if not isinstance(message, Mapping):
        raise InvalidInputError(f"a turn must be a message, a dict or a string, not {type(message).__name__}")
    raw = dict(message)
    role = str(raw.pop("role", None) or raw.pop("type", None) or "user")
    role = _ROLE_NAMES.get(role, role)
    name = raw.pop("speaker", None) or raw.pop("name", None)
    if name is None and role not in _KNOWN_ROLES:
        raise InvalidInputError(f"unknown message role {role!r}: use user, assistant, system or tool, or a speaker")
    speaker = str(name or (user_name if role in _USER_ROLES and user_name else role))
    text = raw.pop("text", None)
    content = raw.pop("content", None)
    if text is None:
        if content is not None and not isinstance(content, str | list):
            raise InvalidInputError(f"message content must be text, not {type(content).__name__}")
        text = message_text(content if content is not None else "")
    elif not isinstance(text, str):
        raise InvalidInputError(f"message text must be a string, not {type(text).__name__}")
    ref = raw.pop("dia_id", None) or raw.pop("id", None)
    timestamp = raw.pop("timestamp", None)
    extra = {k: v for k, v in raw.items() if isinstance(v, str | int | float | bool) and k != "session_date"}
    return Turn(text=str(text), speaker=speaker, role=role, ref=str(ref) if ref is not None else None,
                timestamp=timestamp, extra=extra)


def shown_text(turn: Turn) -> str:
    """The memory's text: what was said, plus the caption of a shared photo (LoCoMo's `blip_caption`)."""
    caption = str(turn.extra.get("blip_caption") or turn.extra.get("caption") or "").strip()
    text = turn.text.strip()
    return f"{text} [shares a photo: {caption}]".strip() if caption else text


_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


def is_question(text: str) -> bool:
    """A turn that only asks — every sentence of it is a question: tagged `question`, ranked below statements
    (`RecallConfig.question_penalty`) and stored once however often it is asked. A turn that tells something and
    then asks ("I ran a marathon! Have you ever run one?") is a statement: it answers questions."""
    sentences = [s.strip() for s in _SENTENCE.findall(text.strip()) if s.strip()]
    return bool(sentences) and all(s.endswith("?") for s in sentences)


def turn_key(speaker: str, when: str, previous: tuple[str, str] | None, *, context: TurnKey = "full") -> str:
    """Who said it and when, and (full) what it answered: `speaker on <time> | replying to <who>: <text>`."""
    if context == "none":
        return ""
    key = f"{speaker} on {when}" if when else speaker
    if context == "full" and previous is not None:
        key += f" | replying to {previous[0]}: {previous[1][:REPLY_CHARS]}"
    return key


def turn_id(cube_id: str, session_id: str, ref: str) -> str:
    """The stable memory id of a turn: the same turn written again (any path, any replay) has the same id."""
    return stable_id(cube_id, "turn", session_id, ref)


def turn_memories(
    turns: Sequence[Turn],
    *,
    user_id: str,
    cube_id: str,
    session_id: str | None = None,
    session_date: Any = None,
    start_index: int = 0,
    previous: tuple[str, str] | None = None,
    source: str = "conversation",
    context: TurnKey = "full",
    metadata: Mapping[str, Any] | None = None,
    parent_id: str | None = None,
    facts_in_metadata: bool = True,
) -> list[MemoryItem]:
    """One memory per non-empty turn, in order. `previous` is (speaker, text) of the turn before `turns[0]` (a
    session continued across calls); `start_index` its position + 1. Without a session the turns are loose
    memories (no turn index, no reply context) — as `Memory.add(text)` writes them.

    The turn's facts (speaker, role, occurred_at, session, turn index, dia_id, replied-to speaker, dataset extras)
    are in `source_refs[0].extra` always, and also in `metadata` unless `facts_in_metadata` is False (`Memory.add`
    keeps `metadata` for the caller's own)."""
    if context not in TURN_KEYS:
        raise InvalidInputError(f"turn key context must be one of {TURN_KEYS}, not {context!r}")
    session_time = parse_time(session_date)
    written_at = now()
    items: list[MemoryItem] = []
    index = start_index
    for turn in turns:
        text = shown_text(turn)
        if not text:
            continue
        check_text(text)
        own = parse_time(turn.timestamp)
        occurred = own if own is not None else session_time if session_time is not None else written_at
        unreadable = turn.timestamp if own is None and isinstance(turn.timestamp, str) and turn.timestamp else None
        when = unreadable or (session_date if own is None and session_time is None and isinstance(
            session_date, str) and session_date else format_time(occurred))
        key = turn_key(turn.speaker, when, previous if session_id else None, context=context)
        question = is_question(text)
        ref = turn.ref or (f"{index}" if session_id else None)
        facts: dict[str, Any] = {"speaker": turn.speaker, "role": turn.role, "occurred_at": occurred}
        if session_id:
            facts |= {"session_id": session_id, "turn_index": index}
        if ref:
            facts["dia_id"] = ref
        if previous is not None and session_id:
            facts["replies_to"] = previous[0]
        if session_date is not None:
            facts["session_date"] = str(session_date)
        if turn.timestamp is not None or session_date is not None:
            facts["timestamp"] = turn.timestamp if turn.timestamp is not None else session_date
        items.append(MemoryItem(
            id=turn_id(cube_id, session_id, ref) if session_id and ref else stable_id(
                cube_id, "turn", "loose", content_hash(f"{turn.speaker}\n{text}")),
            user_id=user_id, cube_id=cube_id, text=text, key=key,
            tags=["question"] if question else [],
            memory_type=MemoryType.LONG_TERM, source=source,
            source_refs=[SourceRef(kind="turn", ref=ref or "", extra={**turn.extra, **facts})],
            session_id=session_id, turn_index=index if session_id else None, parent_id=parent_id,
            occurred_at=occurred,
            # A statement is an event: the same words said again elsewhere are another memory, so its hash covers
            # the turn id and key too. A question restates a need: asked again, it is the same memory.
            # A loose memory (no session) is its words alone, as before.
            content_hash=content_hash(text) if not session_id
            else content_hash(f"question\n{turn.speaker}\n{text}") if question
            else content_hash(f"{ref or ''}\n{key}\n{text}"),
            metadata={**dict(metadata or {}), **turn.extra, **facts} if facts_in_metadata else dict(metadata or {}),
        ))
        if session_id:
            previous = (turn.speaker, text)
            index += 1
    return items
