"""Watermarks: their order (timestamp, timestamp + tiebreaker, integer), ``later_of`` never moving
backward, and ``parse_watermark`` reading what a user types."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from highmark.errors import ConfigError
from highmark.models import Watermark, WatermarkType, later_of
from highmark.project import parse_watermark

T = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
TS = WatermarkType.TIMESTAMP
INT = WatermarkType.INTEGER


def ts(at: datetime, tiebreak: int | None = None) -> Watermark:
    return Watermark(TS, ts=at, id=tiebreak)


def integer(value: int) -> Watermark:
    return Watermark(INT, id=value)


def test_timestamps_order_by_time() -> None:
    early, late = ts(T), ts(T + timedelta(microseconds=1))  # microseconds are kept
    assert early < late and late > early
    assert early <= late and late >= early
    assert not late < early and not early > late
    assert ts(T) == ts(T) and ts(T) <= ts(T) and ts(T) >= ts(T)
    assert not ts(T) < ts(T)


def test_timestamps_with_a_tiebreaker_order_by_time_then_id() -> None:
    ordered = [
        ts(T - timedelta(seconds=1), 99),
        ts(T),  # no tiebreaker yet: before every id at that time
        ts(T, -5),
        ts(T, 0),
        ts(T, 1),
        ts(T, 2),
        ts(T, 10),  # numeric, not lexicographic
        ts(T + timedelta(seconds=1), 1),
    ]
    shuffled = ordered[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled) == ordered
    for low, high in itertools.pairwise(ordered):
        assert low < high and high > low and low <= high and not high <= low
    assert ts(T, 3) == ts(T, 3) and ts(T, 3) != ts(T, 4) and ts(T, 3) != ts(T)


def test_time_zones_compare_as_instants() -> None:
    paris = timezone(timedelta(hours=2))
    assert ts(datetime(2024, 1, 1, 14, 0, tzinfo=paris)) == ts(T)
    assert ts(T.replace(tzinfo=None)) == ts(T)  # naive means UTC
    assert ts(datetime(2024, 1, 1, 13, 0, tzinfo=paris)) < ts(T - timedelta(minutes=30))
    assert ts(datetime(2024, 1, 1, 14, 0, tzinfo=paris)).ts == T
    assert ts(datetime(2024, 1, 1, 14, 0, tzinfo=paris)).ts.tzinfo == UTC  # type: ignore[union-attr]


def test_integers_order_numerically() -> None:
    values = [integer(v) for v in (10, -1, 9, 0, 100, 2)]
    assert [w.id for w in sorted(values)] == [-1, 0, 2, 9, 10, 100]
    assert integer(9) < integer(10) and integer(10) >= integer(10) and integer(10) == integer(10)


def test_a_watermark_needs_its_value() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        Watermark(TS, id=5)
    with pytest.raises(ValueError, match="integer"):
        Watermark(INT, ts=T)


def test_json_round_trip_and_display() -> None:
    for mark in (ts(T), ts(T + timedelta(microseconds=123456), 7), integer(42)):
        assert Watermark.from_json(mark.to_json()) == mark
    assert str(ts(T)) == "2024-01-01T12:00:00Z"
    assert str(ts(T, 5)) == "2024-01-01T12:00:00Z / 5"
    assert str(integer(42)) == "42"


def test_later_of_never_moves_backward() -> None:
    a, b = ts(T, 1), ts(T, 2)
    assert later_of(None, None) is None
    assert later_of(a, None) is a and later_of(None, a) is a
    assert later_of(a, b) is b and later_of(b, a) is b
    same = ts(T, 1)
    assert later_of(a, same) is a  # a tie keeps the current mark
    assert later_of(integer(3), integer(2)) == integer(3)

    rng = random.Random(11)
    marks = [
        ts(T + timedelta(seconds=rng.randint(0, 5)), rng.choice([None, 1, 2, 3]))
        for _ in range(200)
    ]
    current: Watermark | None = None
    for mark in marks:
        previous = current
        current = later_of(current, mark)
        assert current is not None
        assert previous is None or current >= previous
        assert current >= mark
    assert current == max(marks)


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("2024-01-01T00:00:00Z", TS, Watermark(TS, ts=datetime(2024, 1, 1, tzinfo=UTC))),
        ("2024-01-01T00:00:00Z/5", TS, Watermark(TS, ts=datetime(2024, 1, 1, tzinfo=UTC), id=5)),
        (
            " 2024-01-01T00:00:00Z / 5 ",
            TS,
            Watermark(TS, ts=datetime(2024, 1, 1, tzinfo=UTC), id=5),
        ),
        ("2024-01-01T00:00:00", TS, Watermark(TS, ts=datetime(2024, 1, 1, tzinfo=UTC))),
        ("2024-01-01", TS, Watermark(TS, ts=datetime(2024, 1, 1, tzinfo=UTC))),
        (
            "2024-01-01T02:00:00+02:00",
            TS,
            Watermark(TS, ts=datetime(2024, 1, 1, tzinfo=UTC)),
        ),
        (
            "2024-01-01T00:00:00.123456Z",
            TS,
            Watermark(TS, ts=datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ),
        ("42", INT, Watermark(INT, id=42)),
        (" 7 ", INT, Watermark(INT, id=7)),
        ("0", INT, Watermark(INT, id=0)),
    ],
)
def test_parse_watermark(text: str, kind: WatermarkType, expected: Watermark) -> None:
    parsed = parse_watermark(text, kind)
    assert parsed == expected
    assert parsed.ts is None or parsed.ts.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("yesterday", TS, "ISO 8601"),
        ("", TS, "ISO 8601"),
        ("2024-13-01T00:00:00Z", TS, "ISO 8601"),
        ("2024-01-01T00:00:00Z/x", TS, "ISO 8601"),
        ("2024-01-01T00:00:00Z", INT, "an integer"),
        ("4.5", INT, "an integer"),
        ("", INT, "an integer"),
    ],
)
def test_parse_watermark_refuses_what_it_cannot_read(
    text: str, kind: WatermarkType, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_watermark(text, kind)
    assert caught.value.exit_code == 2
    assert expected in str(caught.value) and repr(text) in str(caught.value)
