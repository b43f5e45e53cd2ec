"""Input limits, in one place: `Memory`, REST, LangServe and MCP all check the same numbers with these functions.

Each check returns the (normalised) value or raises `InvalidInputError` with a reason a person can act on.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from hippograph.stores.errors import InvalidInputError

#: Largest memory text (and query, chat message), in characters. Longer input belongs in document ingestion.
MAX_TEXT_CHARS = 32_000
#: How many memories a search or chat turn may ask for.
TOP_K_MIN, TOP_K_MAX = 1, 200
#: The relevance floor of a search (relative to the best hit).
THRESHOLD_MIN, THRESHOLD_MAX = 0.0, 1.0
#: Metadata: nested containers at most this deep (why: JSON encoders and graph stores give up around 250 levels,
#: and deep input is a cheap way to burn CPU), at most this many bytes as JSON.
MAX_METADATA_DEPTH = 16
MAX_METADATA_BYTES = 64_000
#: Any JSON request body: nested containers at most this deep (a chat turn's content blocks need about 6).
MAX_JSON_DEPTH = 32
#: A chat thread id: any printable text up to this length (it is namespaced per user, never parsed).
MAX_THREAD_ID_CHARS = 256
#: Tags on a memory.
MAX_TAGS, MAX_TAG_CHARS = 100, 256
#: Memory and job ids (UUIDs when hippograph makes them; imported ones may differ): at most this long.
MAX_KEY_CHARS = 128
#: Messages in one turn (REST, LangServe), cube ids in one request, inputs in one LangServe batch.
MAX_MESSAGES = 500
MAX_CUBE_IDS = 256
MAX_BATCH_INPUTS = 100

#: Unicode categories that show nothing: controls, format (zero-width, BOM, soft hyphen), surrogates, and
#: separators (spaces, line/paragraph separators). Private-use and unassigned code points count as visible
#: (icon fonts; characters newer than this Python's Unicode database).
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})


def has_visible_char(text: str) -> bool:
    """True when `text` has at least one character a reader can see (not only NUL, control, zero-width, space)."""
    return any(unicodedata.category(ch) not in INVISIBLE_CATEGORIES for ch in text)


def is_plausible_key(value: Any) -> bool:
    """Could `value` be a memory or job id at all (a str of 1-`MAX_KEY_CHARS` printable characters)? Callers
    answer "not found" otherwise, without asking a store (a lone surrogate cannot even be encoded for SQLite)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_KEY_CHARS and value.isprintable()


def check_top_k(value: Any, what: str = "top_k") -> int:
    """An int in `TOP_K_MIN..TOP_K_MAX` (not a bool, not a numeric string)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be an integer, not {type(value).__name__}")
    if not TOP_K_MIN <= value <= TOP_K_MAX:
        raise InvalidInputError(f"{what} must be between {TOP_K_MIN} and {TOP_K_MAX}, not {value}")
    return value


def check_threshold(value: Any, what: str = "threshold") -> float:
    """A finite number in `THRESHOLD_MIN..THRESHOLD_MAX` (not a bool, not a numeric string, not None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{what} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or not THRESHOLD_MIN <= value <= THRESHOLD_MAX:
        raise InvalidInputError(f"{what} must be between {THRESHOLD_MIN} and {THRESHOLD_MAX}, not {value}")
    return float(value)


def check_thread_id(value: Any, what: str = "thread id") -> str | None:
    """None (the default thread) or 1-`MAX_THREAD_ID_CHARS` printable characters of valid UTF-8."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    if not value or len(value) > MAX_THREAD_ID_CHARS:
        raise InvalidInputError(f"{what} must be 1-{MAX_THREAD_ID_CHARS} characters")
    if not value.isprintable():
        raise InvalidInputError(f"{what} contains control, invisible or surrogate characters")
    return value


def check_tags(value: Any) -> list[str]:
    """A list of at most `MAX_TAGS` non-empty printable strings of at most `MAX_TAG_CHARS` characters."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise InvalidInputError("tags must be a list of strings")
    if len(value) > MAX_TAGS:
        raise InvalidInputError(f"at most {MAX_TAGS} tags")
    for tag in value:
        if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_CHARS or not tag.isprintable():
            raise InvalidInputError(f"each tag must be 1-{MAX_TAG_CHARS} printable characters, not {tag!r:.80}")
    return list(value)


def json_depth(value: Any) -> int:
    """How deeply lists and dicts nest in `value` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list | tuple):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def check_json_depth(value: Any, what: str = "input", max_depth: int = MAX_JSON_DEPTH) -> Any:
    if json_depth(value) > max_depth:
        raise InvalidInputError(f"{what} is nested more than {max_depth} levels deep")
    return value


def check_metadata(value: Any) -> dict[str, Any]:
    """A JSON object: str keys, JSON values (finite numbers), at most `MAX_METADATA_DEPTH` deep and
    `MAX_METADATA_BYTES` as JSON. Checked without recursion, so hostile depth cannot overflow the stack."""
    if not isinstance(value, dict):
        raise InvalidInputError(f"metadata must be an object (dict), not {type(value).__name__}")
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list | tuple):
            if depth > MAX_METADATA_DEPTH:
                raise InvalidInputError(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
            if isinstance(node, dict):
                if not all(isinstance(k, str) for k in node):
                    raise InvalidInputError("metadata keys must be strings")
                stack.extend((v, depth + 1) for v in node.values())
            else:
                stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise InvalidInputError("metadata numbers must be finite (no NaN or infinity)")
        elif node is not None and not isinstance(node, str | int | float | bool):
            raise InvalidInputError(f"metadata values must be JSON (not {type(node).__name__})")
    try:
        size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    except (UnicodeEncodeError, ValueError) as exc:
        raise InvalidInputError(f"metadata is not valid JSON text: {exc}") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidInputError(f"metadata is {size:,} bytes as JSON; the limit is {MAX_METADATA_BYTES:,}")
    return value
