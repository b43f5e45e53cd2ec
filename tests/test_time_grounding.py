"""Time grounding (issue 12): relative expressions -> absolute labels; query windows; time-travel validity."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hippograph.nodes.time_grounding import as_datetime, ground, grounded_key, query_window, time_labels, valid_at
from hippograph.stores.errors import InvalidInputError
from hippograph.stores.models import MemoryItem, MemoryStatus

SAID = datetime(2023, 5, 8, 13, 56)  # a Monday


@pytest.mark.parametrize(("text", "labels"), [
    ("I went to a LGBTQ support group yesterday.", ["7 May 2023"]),
    ("We went camping last weekend with the kids", ["week of 1 May 2023"]),
    ("I painted that lake sunrise last year", ["2022"]),
    ("I ran a charity race two weeks ago", ["week of 24 April 2023"]),
    ("a few days ago I met Joe", ["5 May 2023"]),
    ("My birthday is next month", ["June 2023"]),
    ("I started last Friday and finish tomorrow", ["5 May 2023", "9 May 2023"]),
    ("On 20 May 2023 we met, back in 2021 we had not", ["20 May 2023", "2021"]),
    ("Hey Mel! We should talk. How have you been?", []),  # "We" is no date (dateparser's search_dates says it is)
])
def test_turn_expressions_resolve_against_the_turn_time(text: str, labels: list[str]) -> None:
    assert time_labels(text, SAID) == labels


def test_grounding_keeps_the_expression_and_a_timezone_aware_reference_works() -> None:
    (ref,) = ground("see you tomorrow", datetime(2023, 5, 8, 23, 30, tzinfo=UTC))
    assert (ref.expression, ref.unit, ref.start, ref.end) == (
        "tomorrow", "day", datetime(2023, 5, 9), datetime(2023, 5, 10))


def test_grounded_key_appends_dates_once() -> None:
    key = grounded_key("Caroline › 8 May 2023", ["7 May 2023"])
    assert key == "Caroline › 8 May 2023 · 7 May 2023"
    assert grounded_key(key, ["7 May 2023"]) == key
    assert grounded_key("", ["2022"]) == "2022"


def _ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_query_window_relative_to_as_of() -> None:
    as_of = datetime(2023, 8, 1, tzinfo=UTC)
    may = query_window("What did Caroline do in May 2023?", as_of)
    assert may is not None and (may.start, may.end) == (_ts(2023, 5, 1), _ts(2023, 6, 1))
    assert may.contains(_ts(2023, 5, 31, 23)) and not may.contains(_ts(2023, 6, 1))
    last_year = query_window("What happened last year?", as_of)
    assert last_year is not None and (last_year.start, last_year.end) == (_ts(2022, 1, 1), _ts(2023, 1, 1))
    before = query_window("Where did Ana live before June 2023?", as_of)
    assert before is not None and (before.start, before.end) == (None, _ts(2023, 6, 1))
    after = query_window("What changed after May 2023?", as_of)
    assert after is not None and (after.start, after.end) == (_ts(2023, 6, 1), None)
    assert query_window("Where does Ana live?", as_of) is None
    yesterday = query_window("what did I do yesterday", datetime(2024, 1, 1, 9, tzinfo=UTC))
    assert yesterday is not None and yesterday.start == _ts(2023, 12, 31)


def test_valid_at_answers_what_was_true_then() -> None:
    old = MemoryItem(user_id="u", cube_id="c", text="Ana lives in Porto", created_at=100.0, valid_to=200.0,
                     status=MemoryStatus.SUPERSEDED)
    new = MemoryItem(user_id="u", cube_id="c", text="Ana lives in Lisbon", created_at=200.0)
    gone = MemoryItem(user_id="u", cube_id="c", text="deleted", created_at=50.0, status=MemoryStatus.DELETED)
    assert [valid_at(m, 150.0) for m in (old, new, gone)] == [True, False, False]
    assert [valid_at(m, 250.0) for m in (old, new, gone)] == [False, True, False]
    assert valid_at(old, 99.0) is False


def test_as_datetime_reads_numbers_datetimes_and_text() -> None:
    assert as_datetime(0.0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert as_datetime("2023/05/30 (Tue) 23:40").replace(tzinfo=None) == datetime(2023, 5, 30, 23, 40)  # type: ignore[union-attr]
    assert as_datetime(None) is None
    with pytest.raises(InvalidInputError):
        as_datetime("not a time at all zzz")


def test_valid_at_uses_when_an_imported_turn_happened() -> None:
    imported = MemoryItem(user_id="u", cube_id="c", text="we met in 2023", created_at=1_000_000.0, occurred_at=500.0)
    assert valid_at(imported, 600.0) and not valid_at(imported, 400.0)
