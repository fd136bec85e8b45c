"""PostgreSQL's ``infinity`` and ``-infinity`` timestamps and dates, and where they go.

PostgreSQL keeps ``infinity`` and ``-infinity`` in ``timestamptz``, ``timestamp`` and ``date``
columns (``valid_to = 'infinity'``: a row valid until further notice). Python has no such value,
and psycopg refuses to read one ("timestamp too large"), which failed every run of a table that
held one; the fast path into SQLite wrote NULL in its place. highmark reads them as the ends of
Python's range, marked as infinite so that they are not mistaken for a plain
``9999-12-31 23:59:59.999999``:

- into PostgreSQL they are written back as ``infinity`` and ``-infinity`` (so PostgreSQL →
  PostgreSQL keeps them on every path, as COPY does);
- into SQLite and MySQL/MariaDB, which have no infinity, as the last and first instants
  (``9999-12-31 23:59:59.999999``, ``0001-01-01 00:00:00``) and days, in every time zone;
- a time zone never moves them.

:func:`adapters` gives the psycopg loaders that read them so; the SQL fast paths from PostgreSQL
say the same with :func:`sql_case`.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from typing import Any


class InfiniteTime(datetime):
    """PostgreSQL's ``infinity`` (year 9999) or ``-infinity`` (year 1) timestamp."""

    __slots__ = ()


class InfiniteDay(date):
    """PostgreSQL's ``infinity`` (year 9999) or ``-infinity`` (year 1) date."""

    __slots__ = ()


END_OF_TIME = InfiniteTime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
START_OF_TIME = InfiniteTime(1, 1, 1, tzinfo=UTC)
LAST_DAY = InfiniteDay(9999, 12, 31)
FIRST_DAY = InfiniteDay(1, 1, 1)
# How SQLite and MySQL/MariaDB targets, and every fast path into them, write them.
LAST_INSTANT_TEXT = "9999-12-31 23:59:59.999999"
FIRST_INSTANT_TEXT = "0001-01-01 00:00:00.000000"

_TEXT = {"infinity": (END_OF_TIME, LAST_DAY), "-infinity": (START_OF_TIME, FIRST_DAY)}


def as_utc(value: InfiniteTime) -> InfiniteTime:
    """An infinite timestamp, naive or not, as highmark keeps it (in UTC: no zone moves it)."""
    return END_OF_TIME if value.year == 9999 else START_OF_TIME


def from_text(text: str) -> tuple[InfiniteTime, InfiniteDay] | None:
    """The infinite timestamp and day PostgreSQL's text names (``infinity``, ``-infinity``),
    or None (CDC streams carry values as PostgreSQL's text)."""
    return _TEXT.get(text)


def for_postgresql(value: InfiniteTime | InfiniteDay) -> str:
    return "infinity" if value.year == 9999 else "-infinity"


def for_others(value: InfiniteTime) -> datetime:
    """The naive last or first instant a SQLite or MySQL/MariaDB target keeps."""
    return datetime.max if value.year == 9999 else datetime.min


def day_for_others(value: InfiniteDay) -> date:
    return date.max if value.year == 9999 else date.min


def sql_case(column: str, expression: str, *, day: bool, refuse_beyond: bool = False) -> str:
    """A PostgreSQL expression: ``expression`` of ``column``, but the last or first instant (or
    day) as text where ``column`` is ``infinity`` or ``-infinity`` (which ``to_char`` turns
    into NULL, and which other databases refuse). ``refuse_beyond``: a value before the year 1
    or after 9999, which the row path refuses as a bad row (and ``to_char`` would print without
    its era), fails the query instead (an invalid cast, evaluated for that row only), so that
    the fast path's range is refused and read again by the row path, which names the row."""
    last, first = ("9999-12-31", "0001-01-01") if day else (LAST_INSTANT_TEXT, FIRST_INSTANT_TEXT)
    beyond = ""
    if refuse_beyond:
        beyond = (
            f"WHEN {column} < '{first}' OR {column} > '{last}' "
            f"THEN CAST('beyond Python''s years: ' || CAST({column} AS text) AS date)::text "
        )
    return (
        f"CASE WHEN {column} = 'infinity' THEN '{last}' "
        f"WHEN {column} = '-infinity' THEN '{first}' {beyond}ELSE {expression} END"
    )


@functools.cache
def adapters() -> Any:
    """psycopg adapters (for ``connect(context=...)``) whose timestamp and date loaders, text
    and binary, read ``infinity`` and ``-infinity`` as above and leave every other value to
    psycopg's own loaders (built once)."""
    import psycopg
    from psycopg.adapt import AdaptersMap

    mapped = AdaptersMap(psycopg.adapters)
    register(mapped)
    return mapped


def register(adapters: Any) -> None:
    """Register the loaders on ``adapters`` (a psycopg AdaptersMap: global, a connection's)."""
    import psycopg
    from psycopg import DataError
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    base = psycopg.adapters
    naive_end = InfiniteTime(9999, 12, 31, 23, 59, 59, 999999)
    naive_start = InfiniteTime(1, 1, 1)
    ends: list[tuple[str, Any, Any, int]] = [
        ("timestamptz", END_OF_TIME, START_OF_TIME, 64),
        ("timestamp", naive_end, naive_start, 64),
        ("date", LAST_DAY, FIRST_DAY, 32),
    ]
    for name, later, earlier, bits in ends:
        oid = base.types[name].oid
        for fmt in (Format.TEXT, Format.BINARY):
            if fmt is Format.TEXT:
                plus, minus = b"infinity", b"-infinity"
            else:  # the largest and the smallest integer of the binary form
                size = bits // 8
                plus = (2 ** (bits - 1) - 1).to_bytes(size, "big", signed=True)
                minus = (-(2 ** (bits - 1))).to_bytes(size, "big", signed=True)
            finite = base.get_loader(oid, fmt)
            assert finite is not None

            # A Python loader wrapping psycopg's (C) one: a subclass of a C loader would be
            # called through its C method, past any Python override.
            class InfinityLoader(Loader):
                format = fmt

                def __init__(
                    self,
                    oid: int,
                    context: Any = None,
                    *,
                    _finite: Any = finite,
                    _ends: tuple[bytes, Any, bytes, Any] = (plus, later, minus, earlier),
                ) -> None:
                    super().__init__(oid, context)
                    self._load = _finite(oid, context).load
                    self._ends = _ends

                def load(self, data: Any) -> Any:
                    plus, later, minus, earlier = self._ends
                    if data == plus:
                        return later
                    if data == minus:
                        return earlier
                    try:
                        return self._load(data)
                    except DataError:
                        # Beyond Python's years (BC, after 9999): the text, which the row's
                        # conversion then refuses, naming the row (a bad row), where the
                        # fetch would have failed the whole read.
                        return _as_text(data, text=self.format == Format.TEXT)

            adapters.register_loader(oid, InfinityLoader)


def _as_text(data: Any, *, text: bool) -> str:
    """A value psycopg cannot load, as text for the bad-row report."""
    raw = bytes(data)
    if text:
        return raw.decode("utf-8", errors="replace")
    return f"binary value 0x{raw.hex()}"
