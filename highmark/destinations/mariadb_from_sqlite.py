"""SQLite → MySQL/MariaDB: each key range read with sqlite3 as tuples, written as CSV by the
``csv`` module and streamed into ``LOAD DATA LOCAL INFILE`` (highmark/destinations/mariadb_load.py).

Values go in SQLite's own form wherever MariaDB reads that form as the row path would write it:
numbers and text as they are, timestamps stored as the row path's text when both connections
share a time zone. Any other value goes through the row path's own converters first.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from highmark.destinations.column_fixes import (
    ColumnFix,
    fixed,
    texts_matching,
    types_within,
)
from highmark.destinations.mariadb_load import load_csv
from highmark.destinations.ranges import TargetPlan, columns_of, refusing_unconvertible
from highmark.destinations.sqlite_attach import range_select
from highmark.sources.base import CopyRange
from highmark.sources.postgres_copy import PostgresCopyRange
from highmark.sqltypes import ColumnInfo, Family, TimestampKind

FETCH_ROWS = 10_000
# ``YYYY-MM-DD HH:MM:SS.ffffff``, as the row path writes a timestamp into SQLite. MariaDB refuses
# (with a warning, which refuses the range) what else the row path would refuse in that form,
# but for the year 0, which it stores.
ROW_PATH_TEXT = re.compile(r"(?!0000)\d{4}.{6} .{8}\..{6}", re.ASCII)
_AS_IS: dict[Family, tuple[type, ...]] = {
    Family.INTEGER: (int,),
    Family.FLOAT: (float, int),
    Family.DECIMAL: (int, float),
    Family.STRING: (str,),
}


class _Null(float):
    """NULL for LOAD DATA: a number to the csv module (so never quoted), written ``NULL``."""

    def __str__(self) -> str:
        return "NULL"


NULL = _Null()


def unavailable(plan: TargetPlan, source_url: Any) -> str | None:
    from highmark.destinations.sqlite_attach import database_file

    if database_file(source_url) is None:
        return "the source is not a SQLite file on this machine"
    for source_name, _ in plan.mapping:
        src = plan.source.find(source_name)
        assert src is not None
        if src.family is Family.BINARY:
            return f"column {source_name} is binary (no CSV form)"
    return None


class SqliteIntoLoadData:
    parallel = False  # the source is one SQLite file

    def __init__(self, plan: TargetPlan, source_file: str) -> None:
        self.plan = plan
        self.source_file = source_file
        self.fixes = [_fix(i, src, tgt, convert, plan) for i, src, tgt, convert in columns_of(plan)]

    def load(
        self, conn: Connection, quoted_table: str, columns: list[str], source_range: CopyRange
    ) -> int:
        assert isinstance(source_range, PostgresCopyRange)
        names = [self.plan.quote(c) for c in columns]
        with refusing_unconvertible():
            return load_csv(conn, quoted_table, names, self._csv(source_range))

    def _csv(self, source_range: PostgresCopyRange) -> Iterator[bytes]:
        statement, params = range_select(source_range, self.plan)
        reader = sqlite3.connect(self.source_file)
        fixes = self.fixes
        try:
            rows = reader.execute(statement, params)
            while chunk := rows.fetchmany(FETCH_ROWS):
                text = io.StringIO()
                writer = csv.writer(text, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
                # Fixed only where a value needs it (column_fixes.py).
                ready = fixed(fixes, chunk)
                writer.writerows([[NULL if v is None else v for v in row] for row in ready])
                yield text.getvalue().encode()
        finally:
            reader.close()


def _fix(
    i: int, src: ColumnInfo, tgt: ColumnInfo, convert: Callable[[Any], Any], plan: TargetPlan
) -> ColumnFix:
    """A source value as CSV takes it (None: NULL, written by the caller): as it is where
    MariaDB reads it as the row path writes it; and its chunk test, from the same rules."""
    if src.family is Family.TIMESTAMP and tgt.family is Family.TIMESTAMP:
        utc = tgt.timestamp_kind is TimestampKind.UTC_NAIVE
        if ZoneInfo("UTC" if utc else plan.target_zone) == ZoneInfo(plan.source_zone):
            text = ROW_PATH_TEXT.fullmatch
            return ColumnFix(
                i,
                lambda v: v if v is None or (v.__class__ is str and text(v)) else _text(convert(v)),
                texts_matching(i, ROW_PATH_TEXT),
            )
    kept = _AS_IS.get(src.family) if src.family is tgt.family else None
    if kept is not None:
        return ColumnFix(
            i,
            lambda v: v if v is None or isinstance(v, kept) else _text(convert(v)),
            types_within(i, kept),
        )
    return ColumnFix(i, lambda v: None if v is None else _text(convert(v)), None)


def _text(value: Any) -> Any:
    """A converted value as CSV takes it (bools as 0/1, the rest as their text)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str):
        return value
    return str(value)
