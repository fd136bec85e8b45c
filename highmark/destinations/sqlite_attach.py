"""SQLite → SQLite with both files on this machine: rows move inside the SQLite engine.

The target's connection ATTACHes the source file (read only) and each batch — a key range probed
exactly as PostgreSQL's COPY ranges are (highmark/sources/postgres_copy.py) — goes in with one
``INSERT … SELECT … FROM <source> WHERE <range>``. No row becomes a Python object, yet the values
are the ones the row path would write: a column whose every value the row path writes as it read
it (integers, floats, blobs) is copied with no test; a value already in the form the row path
writes (text in a text column, a timestamp as ``YYYY-MM-DD HH:MM:SS.ffffff`` when both
connections share a time zone, …) is copied as it is; any other value goes through the row
path's own converters, called from SQL (``hm_value``). The run keeps its keyset batches, its
checkpoint after each, its resume after a kill and its exact counts: only how a batch's rows reach
the table changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from highmark.destinations.ranges import TargetPlan, row_path_converter
from highmark.schema.sqlite_decimal import DecimalText
from highmark.sources.base import CopyRange, RangeRefused
from highmark.sources.postgres_copy import PostgresCopyRange
from highmark.sqlschema import TableSchema
from highmark.sqltypes import Converter, Family, TimestampKind, read_converter

ALIAS = "hm_source"
FUNCTION = "hm_value"
# The text the row path writes for a timestamp (datetime.isoformat(" ", "microseconds")) is
# tested in two cheap steps rather than by one GLOB of 20 character classes (which took ~0.4 s
# a column per 1,000,000 values): the shape, with single-character wildcards and the last
# character a digit, then SQLite's own date parser. Together they hold exactly the canonical
# text: julianday() reads 4-2-2 date digits, a space, 2:2:2 time digits and a fraction of at
# least one digit followed by nothing but an optional time zone; in 26 characters that end in a
# digit, with the separators where the shape puts them, no zone fits (``Z`` is not a digit,
# ``+HH:MM`` needs 7 characters after the point) and the fraction is the 6 digits. julianday()
# also refuses a month over 12, a day over 31, an hour over 24, a minute or second over 59, which
# the class GLOB let through; it still takes hour 24, day 31 of a 30-day month and February 30,
# which the row path refuses (README, "Loads": the one exception). The year 0, which it also
# takes, is below the first day of the year 1 (julianday('0001-01-01')), which the test asks
# for instead of any day at all, at no cost.
TIMESTAMP_SHAPE = "????-??-?? ??:??:??.?????[0-9]"
FIRST_YEAR_JULIAN_DAY = 1721425.5
# Families whose every value the row path writes as it read it (sqlite3 hands it an int, a
# float, a str or bytes, and neither its reader nor its SQLite writer changes any of them):
# copied with no test at all. The target's column affinity then acts on the very value the
# row path would bind.
_IDENTICAL = {Family.INTEGER, Family.FLOAT, Family.BINARY}
# Storage classes the row path leaves as they are, by family (what it reads, it writes again).
_KEPT: dict[Family, tuple[str, ...]] = {
    Family.DECIMAL: ("real", "integer"),
    Family.STRING: ("text",),
}


def database_file(url: URL) -> Path | None:
    """The file of a SQLite URL, or None (in memory, or a URI the engine resolves itself)."""
    name = url.database
    if url.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return None
    if name.startswith("file:") or url.query.get("uri"):
        return None
    path = Path(name)
    return path.resolve() if path.exists() else None


def unavailable(
    source_url: URL, target_url: URL, source: TableSchema, schema: str | None
) -> str | None:
    """Why a batch cannot move inside the engine, or None when it can."""
    if database_file(source_url) is None:
        return "the source is not a SQLite file on this machine"
    if database_file(target_url) is None:
        return "the target is not a SQLite file on this machine"
    if source.schema or schema:
        return "a table in an attached schema"
    return None


class SqliteRanges:
    """The source file ATTACHed to the target's connection; each range one INSERT … SELECT."""

    parallel = False  # one writer at a time in a SQLite file

    def __init__(self, plan: TargetPlan, same_file: bool) -> None:
        self.plan = plan
        self.same_file = same_file
        self.expressions, self.converters = _select_list(plan)

    @classmethod
    def open(
        cls, conn: Connection, source_url: URL, target_url: URL, plan: TargetPlan
    ) -> SqliteRanges:
        """ATTACH the source to ``conn``, outside any transaction (SQLite refuses it inside)."""
        source_file, target_file = database_file(source_url), database_file(target_url)
        assert source_file is not None and target_file is not None
        ranges = cls(plan, source_file == target_file)
        if conn.in_transaction():
            conn.commit()
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        if not ranges.same_file and not _attached(raw):
            raw.execute(f"ATTACH DATABASE ? AS {ALIAS}", (str(source_file),))
        return ranges

    def load(
        self, conn: Connection, quoted_table: str, columns: list[str], source_range: CopyRange
    ) -> int:
        """``INSERT INTO quoted_table SELECT … FROM <source> WHERE <range>``; the rows inserted."""
        assert isinstance(source_range, PostgresCopyRange)
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        if not self.same_file and not _attached(raw):
            # A new connection (the old one broke): ATTACH cannot happen inside a transaction.
            raise RangeRefused("the source file is not attached to this connection")
        raw.create_function(FUNCTION, 2, _dispatch(self.converters), deterministic=True)
        quote = self.plan.quote
        name = quote(self.plan.source.name)
        where, params = source_range.driver_sql(conn.dialect)
        origin = name if self.same_file else f"{ALIAS}.{name}"
        statement = (
            f"INSERT INTO {quoted_table} ({', '.join(quote(c) for c in columns)}) "
            f"SELECT {', '.join(self.expressions)} FROM {origin} AS {name} WHERE {where}"
        )
        try:
            return int(raw.execute(statement, params).rowcount)
        except sqlite3.IntegrityError as exc:  # a constraint of the target: the row path names it
            raise RangeRefused(f"the target refused a row: {exc}") from exc
        except sqlite3.OperationalError as exc:
            if "user-defined function raised exception" not in str(exc):
                raise
            # A value the row path's converter cannot read (an unparsable timestamp text): the
            # row path reads the range again and names the row.
            raise RangeRefused(f"a value could not be converted: {exc}") from exc


def _select_list(plan: TargetPlan) -> tuple[list[str], list[Converter]]:
    """Each target column as an expression over the source's, and the converters that
    ``hm_value(i, value)`` applies to a value not already in the row path's form."""
    expressions: list[str] = []
    converters: list[Converter] = []
    source, target, quote = plan.source, plan.target, plan.quote
    same_zone = ZoneInfo(plan.source_zone) == ZoneInfo(plan.target_zone)
    for i, ((source_name, target_name), write) in enumerate(
        zip(plan.mapping, plan.writers, strict=True)
    ):
        src, tgt = source.find(source_name), target.find(target_name)
        assert src is not None and tgt is not None
        column = f"{quote(source.name)}.{quote(source_name)}"
        converters.append(
            row_path_converter(read_converter(src, ZoneInfo(plan.source_zone)), write)
        )
        if src.family is tgt.family and src.family in _IDENTICAL:
            expressions.append(column)
            continue
        kept = _KEPT.get(src.family) if src.family is tgt.family else None
        if isinstance(tgt.type, DecimalText):
            kept = None  # a double's text there would be SQLite's 15 digits, not the row path's
        if kept is not None:
            classes = ", ".join(f"'{c}'" for c in ("null", *kept))
            test = f"typeof({column}) IN ({classes})"
        elif (
            src.family is Family.TIMESTAMP
            and src.timestamp_kind is TimestampKind.SQLITE_TEXT
            and tgt.timestamp_kind is TimestampKind.SQLITE_TEXT
            and same_zone
        ):
            test = (
                f"{column} IS NULL OR ({column} GLOB '{TIMESTAMP_SHAPE}' "
                f"AND julianday({column}) >= {FIRST_YEAR_JULIAN_DAY})"
            )
        else:
            expressions.append(f"{FUNCTION}({i}, {column})")
            continue
        expressions.append(f"CASE WHEN {test} THEN {column} ELSE {FUNCTION}({i}, {column}) END")
    return expressions, converters


def range_select(source_range: PostgresCopyRange, plan: TargetPlan) -> tuple[str, list[Any]]:
    """``SELECT <mapped source columns> FROM <source> WHERE <range>`` on the source's own
    connection, and its parameters."""
    source = source_range.source
    where, params = source_range.driver_sql(source.engine.dialect)
    quote = source.engine.dialect.identifier_preparer.quote
    name = quote(source.describe().name)
    select = ", ".join(f"{name}.{quote(s)}" for s, _ in plan.mapping)
    return f"SELECT {select} FROM {name} WHERE {where}", params


def _attached(raw: sqlite3.Connection) -> bool:
    return any(row[1] == ALIAS for row in raw.execute("PRAGMA database_list"))


def _dispatch(converters: list[Converter]) -> Callable[[int, Any], Any]:
    def hm_value(index: int, value: Any) -> Any:
        try:
            return converters[index](value)
        except OverflowError as exc:
            # sqlite3 reports a function's OverflowError as "string or blob too big", which
            # would send the range down as a refused batch under that false reason; any other
            # error is "user-defined function raised exception", which load() hands on as a
            # value the row path names (a date shifted past the year 9999 by its zone).
            raise ValueError(str(exc)) from exc

    return hm_value
