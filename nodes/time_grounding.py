"""Time grounding: relative time expressions resolved against a reference time, by rules + `dateparser` (offline).

- A turn's expressions ("yesterday", "last week", "two years ago", "in May") are resolved against the turn's own
  time (`occurred_at`) into absolute labels ("7 May 2023", "week of 1 May 2023", "April 2023", "2022") that go
  into the memory's index key, so "what did Ana do on 7 May 2023" finds the turn that said "yesterday".
- A query's expressions ("in May 2023", "last year", "before June 2023") become a time window relative to the
  reference time of the question (`ChatContext.as_of`, default now): recall boosts memories that happened in it.
- `valid_at` answers "what was true then" over `valid_from` / `valid_to` (time-travel search).

Why rules first: `dateparser.search.search_dates` over a whole turn takes ~40 ms and reads words such as "We"
as dates; matching the few expression shapes conversations use and handing only those to `dateparser.parse`
is ~10x cheaper and does not invent dates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import dateparser

from hippograph.stores.models import MemoryItem, MemoryStatus

Unit = Literal["day", "week", "month", "year"]

_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_MONTHS_SHORT = "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_COUNT = (r"(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|few|a few|couple of|"
          r"a couple of|\d{1,3})")
_MONTH = rf"(?:{_MONTHS}|(?:{_MONTHS_SHORT})\.?)"
#: (pattern, unit). First match wins on overlapping text; order = most specific first.
_PATTERNS: list[tuple[re.Pattern[str], Unit | None]] = [
    (re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}\b", re.I), "day"),
    (re.compile(rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b", re.I), "day"),
    (re.compile(rf"\b{_MONTH},?\s+\d{{4}}\b", re.I), "month"),
    (re.compile(r"\b(?:yesterday|today|tonight|tomorrow)\b", re.I), "day"),
    (re.compile(rf"\b{_COUNT}\s+(?:day|week|month|year)s?\s+ago\b", re.I), None),
    (re.compile(rf"\b(?:last|next|this|past|previous|coming)\s+(?:week|weekend|month|year|{_DAYS}|{_MONTHS})\b",
                re.I), None),
    (re.compile(rf"\b(?:in|on|since|during|by|until|before|after)\s+(?:{_MONTHS})\b", re.I), "month"),
    (re.compile(r"\b(?:in|since|during|by|until|before|after|of)\s+(?:19|20)\d{2}\b", re.I), "year"),
]
_WORD_COUNTS = {"a": "1", "an": "1", "one": "1", "few": "3", "a few": "3", "couple of": "2", "a couple of": "2"}
_BEFORE = re.compile(r"\b(?:before|until|prior to|earlier than)\s*$", re.I)
_AFTER = re.compile(r"\b(?:after|since|later than)\s*$", re.I)


@dataclass(frozen=True)
class TimeRef:
    """One grounded expression: what was said, when it points to, and at what granularity."""

    expression: str
    start: datetime
    """Start of the period (midnight of the day, Monday of the week, 1st of the month, 1 January)."""
    unit: Unit

    @property
    def end(self) -> datetime:
        if self.unit == "day":
            return self.start + timedelta(days=1)
        if self.unit == "week":
            return self.start + timedelta(days=7)
        if self.unit == "month":
            year, month = divmod(self.start.month, 12)
            return self.start.replace(year=self.start.year + year, month=month + 1)
        return self.start.replace(year=self.start.year + 1)

    @property
    def label(self) -> str:
        """Absolute words for the index key: day and month and year tokens a query can match."""
        s = self.start
        if self.unit == "day":
            return f"{s.day} {s:%B %Y}"
        if self.unit == "week":
            return f"week of {s.day} {s:%B %Y}"
        if self.unit == "month":
            return f"{s:%B %Y}"
        return f"{s.year}"


def _unit_of(expression: str) -> Unit:
    text = expression.lower()
    for unit in ("week", "month", "year"):
        if unit in text:
            return unit  # type: ignore[return-value]
    if re.search(_MONTHS, text):
        return "month"
    return "day"


def _floor(moment: datetime, unit: Unit) -> datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "year":
        return day.replace(month=1, day=1)
    return day


def _parseable(expression: str) -> str:
    """What `dateparser` understands: 'weekend' as its week, word counts as digits, no leading preposition."""
    text = re.sub(r"\bweekend\b", "week", expression.lower())
    text = re.sub(r"^(?:in|on|since|during|by|until|before|after|of)\s+", "", text)
    for words, digits in sorted(_WORD_COUNTS.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"^{words}\s+(?=(?:day|week|month|year))", f"{digits} ", text)
    return text


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def ground(text: str, reference: datetime) -> list[TimeRef]:
    """Every time expression of `text` resolved against `reference` (the moment the text was said)."""
    base = _naive(reference)
    settings = {"RELATIVE_BASE": base, "PREFER_DATES_FROM": "past", "RETURN_AS_TIMEZONE_AWARE": False}
    taken: list[tuple[int, int]] = []
    refs: list[tuple[int, TimeRef]] = []
    for pattern, unit in _PATTERNS:
        for match in pattern.finditer(text):
            if any(match.start() < end and start < match.end() for start, end in taken):
                continue
            expression = match.group(0)
            parsed = dateparser.parse(_parseable(expression), languages=["en"], settings=settings)  # type: ignore[arg-type]
            if parsed is None:
                continue
            kind = unit or _unit_of(expression)
            if "next" in expression.lower() or "coming" in expression.lower() or "tomorrow" in expression.lower():
                parsed = dateparser.parse(_parseable(expression), languages=["en"],
                                          settings={**settings, "PREFER_DATES_FROM": "future"}) or parsed  # type: ignore[arg-type]
            taken.append((match.start(), match.end()))
            refs.append((match.start(), TimeRef(expression, _floor(parsed, kind), kind)))
    return [ref for _, ref in sorted(refs, key=lambda pair: pair[0])]


def time_labels(text: str, reference: datetime) -> list[str]:
    """The absolute labels of `text`'s time expressions, each once, in order of appearance."""
    return list(dict.fromkeys(ref.label for ref in ground(text, reference)))


def grounded_key(key: str, labels: list[str]) -> str:
    """`key` with the absolute dates appended (idempotent: labels already in the key are not added again)."""
    new = [label for label in labels if label not in key]
    if not new:
        return key
    return f"{key} · {'; '.join(new)}" if key else "; ".join(new)


@dataclass(frozen=True)
class TimeWindow:
    """A query's time constraint, as epoch seconds `[start, end)` (either side may be open)."""

    start: float | None
    end: float | None
    expression: str

    def contains(self, ts: float | None) -> bool:
        if ts is None:
            return False
        return (self.start is None or ts >= self.start) and (self.end is None or ts < self.end)


def query_window(query: str, as_of: datetime | None = None) -> TimeWindow | None:
    """The period a query asks about, relative to `as_of` (default now, UTC), or None when it names none.

    "in May 2023" -> May 2023; "last year" -> the calendar year before `as_of`; "before June 2023" -> everything
    before 1 June 2023. Several expressions: the first one.
    """
    reference = as_of or datetime.now(UTC)
    refs = ground(query, reference)
    if not refs:
        return None
    ref = refs[0]
    start = ref.start.replace(tzinfo=UTC).timestamp()
    end = ref.end.replace(tzinfo=UTC).timestamp()
    prefix = query[: query.find(ref.expression)] if ref.expression in query else ""
    lowered = ref.expression.lower()
    if _BEFORE.search(prefix) or lowered.startswith(("before", "until")):
        return TimeWindow(None, start, ref.expression)
    if _AFTER.search(prefix) or lowered.startswith(("after", "since")):
        return TimeWindow(end if lowered.startswith("after") or _AFTER.search(prefix) else start, None,
                          ref.expression)
    return TimeWindow(start, end, ref.expression)


def as_datetime(value: float | datetime | str | None) -> datetime | None:
    """An `as_of` given as epoch seconds, a datetime or an ISO / natural-language string (`dateparser`)."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    parsed = dateparser.parse(str(value), languages=["en"], settings={"RETURN_AS_TIMEZONE_AWARE": True})
    if parsed is None:
        from hippograph.stores.errors import InvalidInputError

        raise InvalidInputError(f"cannot read the time {str(value)[:100]!r}")
    return parsed


def event_time(item: MemoryItem) -> float:
    """When a memory happened: the turn's time when known, else when it was written."""
    occurred = getattr(item, "occurred_at", None)
    return float(occurred) if occurred is not None else item.created_at


def valid_at(item: MemoryItem, as_of: float) -> bool:
    """Was this memory true at `as_of`? It had happened by then (`occurred_at`: a conversation imported today
    still happened on its own dates; else `valid_from`, when it was written) and was not yet replaced
    (`valid_to`). A memory the user deleted is never returned, whatever the time."""
    if item.status == MemoryStatus.DELETED:
        return False
    occurred = getattr(item, "occurred_at", None)
    start = occurred if occurred is not None else item.valid_from if item.valid_from is not None else item.created_at
    return start <= as_of and (item.valid_to is None or as_of < item.valid_to)
