"""From a SQLite source: a chunk goes to the target as it is only where fixing each value would
have changed none (highmark/destinations/column_fixes.py; each path's _fix)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import types

from highmark.destinations import mariadb_from_sqlite, postgres_from_sqlite
from highmark.destinations.column_fixes import ColumnFix
from highmark.sqltypes import ColumnInfo, Family, TimestampKind

CONVERTED = object()  # what the stand-in converter returns: the value was not kept


def _convert(_value: Any) -> Any:
    return CONVERTED


def _column(family: Family, kind: TimestampKind | None = None) -> ColumnInfo:
    return ColumnInfo("c", types.NullType(), True, family, "sqlite", kind)


# Values sqlite3 can hand back for a column whatever its declared type, and odd texts.
VALUES: list[Any] = [
    None, 0, 7, -3, 1.5, float("inf"), "", " ", "7", "1.50", "x", b"", b"\x00",
    "2024-03-01 10:00:00", "2024-03-01 10:00:00.123456", "2024-03-01T10:00:00Z",
    "2024-03-01 10:00:00+02:00", "2024-03-01 24:00:00", "2024-03-01 10:00:00.1234567",
    "now", "2024-03-01", "2024-03-01 10:00:00 ", "\u0662024-03-01 10:00:00",
]  # fmt: skip

TEXT_TIME = _column(Family.TIMESTAMP, TimestampKind.SQLITE_TEXT)
AWARE_TIME = _column(Family.TIMESTAMP, TimestampKind.AWARE)
UTC_TIME = _column(Family.TIMESTAMP, TimestampKind.UTC_NAIVE)
CASES = [
    (TEXT_TIME, AWARE_TIME),
    (TEXT_TIME, UTC_TIME),
    (_column(Family.INTEGER), _column(Family.INTEGER)),
    (_column(Family.FLOAT), _column(Family.FLOAT)),
    (_column(Family.DECIMAL), _column(Family.DECIMAL)),
    (_column(Family.STRING), _column(Family.STRING)),
    (_column(Family.BINARY), _column(Family.BINARY)),
    (_column(Family.JSON), _column(Family.JSON)),
    (_column(Family.INTEGER), _column(Family.STRING)),
]  # fmt: skip


def _into_postgresql(i: int, src: ColumnInfo, tgt: ColumnInfo) -> ColumnFix:
    return postgres_from_sqlite._fix(i, src, tgt, _convert)


def _into_mariadb(i: int, src: ColumnInfo, tgt: ColumnInfo) -> ColumnFix:
    plan: Any = SimpleNamespace(source_zone="UTC", target_zone="UTC")
    return mariadb_from_sqlite._fix(i, src, tgt, _convert, plan)


PATHS = [_into_postgresql, _into_mariadb]


@pytest.mark.parametrize("make", PATHS, ids=["postgresql", "mariadb"])
@pytest.mark.parametrize(("src", "tgt"), CASES, ids=lambda c: str(c.family))
def test_a_chunk_passes_as_it_is_only_when_no_value_of_it_would_change(
    make: Callable[[int, ColumnInfo, ColumnInfo], ColumnFix], src: ColumnInfo, tgt: ColumnInfo
) -> None:
    fix = make(1, src, tgt)
    for value in VALUES:
        kept = fix.value(value) is value
        chunk = [(0, None, 0), (1, value, 1), (2, None, 2)]
        unchanged = fix.unchanged is not None and fix.unchanged(chunk)
        # Never "unchanged" for a value the fix would change: that value would reach COPY raw.
        assert not unchanged or kept, (src.family, value)
        # And the test is not so strict that the usual values lose the fast way.
        if kept and value is not None and fix.unchanged is not None:
            plain_chunk = [(0, value, 0)] * 3
            assert fix.unchanged(plain_chunk), (src.family, value)


@pytest.mark.parametrize("make", PATHS, ids=["postgresql", "mariadb"])
def test_a_chunk_with_one_value_to_fix_among_plain_ones_is_fixed(
    make: Callable[[int, ColumnInfo, ColumnInfo], ColumnFix],
) -> None:
    fix = make(0, TEXT_TIME, AWARE_TIME if make is _into_postgresql else UTC_TIME)
    chunk = [("2024-03-01 10:00:00.000000",)] * 50 + [("now",)] + [(None,)] * 5
    assert fix.unchanged is not None and not fix.unchanged(chunk)
    assert fix.unchanged(chunk[:50] + chunk[51:])
