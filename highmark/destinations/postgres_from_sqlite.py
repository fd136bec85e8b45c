"""SQLite → PostgreSQL: each key range read with sqlite3 as tuples and streamed into
``COPY … FROM STDIN``, values passed in SQLite's own form wherever PostgreSQL reads that form as
the row path would write it.

A timestamp stored as text goes as it is into a ``timestamptz`` column, read in the source
connection's zone (the COPY's transaction sets ``TimeZone`` to it, as the row path reads naive
SQLite text); numbers, text and blobs go as they are. Any other value (an epoch number in a
timestamp column, a date with a time, json text) goes through the row path's own converters. A
value PostgreSQL cannot read fails the COPY: the range is refused and its batch written again
as rows, where the error names the row.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from highmark.destinations.column_fixes import (
    ColumnFix,
    fixed,
    texts_matching,
    types_within,
)
from highmark.destinations.ranges import (
    TargetPlan,
    columns_of,
    pg_literal,
    refusing_unconvertible,
)
from highmark.destinations.sqlite_attach import range_select
from highmark.sources.base import CopyRange, RangeRefused
from highmark.sources.postgres_copy import PostgresCopyRange
from highmark.sqltypes import ColumnInfo, Family, TimestampKind

FETCH_ROWS = 10_000
# A timestamp text that PostgreSQL reads as the row path does (``datetime.fromisoformat``), in
# the COPY's time zone when it names none: the row path's own form, SQLite's CURRENT_TIMESTAMP
# and strftime('%Y-%m-%d %H:%M:%f') forms, ISO 8601 with a ``T``, ``Z`` or an offset. PostgreSQL
# also takes what the row path refuses or reads otherwise — ``now``, ``epoch``, ``Jan 8 2024``,
# ``01/08/2024`` (by DateStyle), zone names, hour 24, second 60, a seventh fractional digit
# (rounded, where Python truncates) — so any other text goes through the row path's converter,
# which reads it or refuses it as a bad row. (Within this form, a day or a month that does not
# exist fails the COPY as it fails the converter, and the range is written again as rows.)
PLAIN_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\d[ T](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?",
    re.ASCII,
)
# Python types a family's SQLite values may have to go into COPY untouched.
_AS_IS: dict[Family, tuple[type, ...]] = {
    Family.INTEGER: (int,),
    Family.FLOAT: (float, int),
    Family.DECIMAL: (int, float, str),
    Family.STRING: (str,),
    Family.BINARY: (bytes,),
}


def unavailable(source_url: Any) -> str | None:
    from highmark.destinations.sqlite_attach import database_file

    if database_file(source_url) is None:
        return "the source is not a SQLite file on this machine"
    return None


class SqliteIntoPostgres:
    parallel = False  # the source is one SQLite file

    def __init__(self, plan: TargetPlan, source_file: str) -> None:
        self.plan = plan
        self.source_file = source_file
        self.fixes = [_fix(i, src, tgt, convert) for i, src, tgt, convert in columns_of(plan)]

    def load(
        self, conn: Connection, quoted_table: str, columns: list[str], source_range: CopyRange
    ) -> int:
        assert isinstance(source_range, PostgresCopyRange)
        statement, params = range_select(source_range, self.plan)
        raw: Any = conn.connection.dbapi_connection
        names = ", ".join(self.plan.quote(c) for c in columns)
        loaded = 0
        reader = sqlite3.connect(self.source_file)
        try:
            with refusing_unconvertible(), raw.cursor() as cursor:
                zone = pg_literal(str(ZoneInfo(self.plan.source_zone)))
                cursor.execute(f"SET LOCAL TimeZone = {zone}")
                with cursor.copy(f"COPY {quoted_table} ({names}) FROM STDIN") as copy:
                    rows = reader.execute(statement, params)
                    while chunk := rows.fetchmany(FETCH_ROWS):
                        # Fixed only where a value needs it (column_fixes.py).
                        for row in fixed(self.fixes, chunk):
                            copy.write_row(row)
                        loaded += len(chunk)
                cursor.execute("SET LOCAL TimeZone = 'UTC'")
        except Exception as exc:
            if _is_data_error(exc):
                raise RangeRefused(f"the target refused a value: {exc}") from exc
            raise
        finally:
            reader.close()
        return loaded


def _fix(i: int, src: ColumnInfo, tgt: ColumnInfo, convert: Callable[[Any], Any]) -> ColumnFix:
    """A column's fix and its chunk test, built side by side from the same rules."""
    if src.family is Family.TIMESTAMP and tgt.timestamp_kind is TimestampKind.AWARE:
        plain = PLAIN_TIMESTAMP.fullmatch
        return ColumnFix(
            i,
            lambda v: v if v is None or (v.__class__ is str and plain(v)) else convert(v),
            texts_matching(i, PLAIN_TIMESTAMP),
        )
    kept = _AS_IS.get(src.family) if src.family is tgt.family else None
    if kept is None:
        return ColumnFix(i, lambda v: None if v is None else convert(v), None)
    return ColumnFix(
        i,
        lambda v: v if v is None or isinstance(v, kept) else convert(v),
        types_within(i, kept),
    )


def _is_data_error(exc: Exception) -> bool:
    from psycopg import errors

    return isinstance(exc, errors.DataError | errors.IntegrityError)
