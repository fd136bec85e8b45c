"""SQLite → MySQL/MariaDB: each key range read with sqlite3 as tuples, written as CSV by the
``csv`` module and streamed into ``LOAD DATA LOCAL INFILE`` (highmark/destinations/mariadb_load.py).

Values go in SQLite's own form wherever MariaDB reads that form as the row path would write it:
numbers and text as they are, timestamps stored as the row path's text when both connections
share a time zone. Any other value goes through the row path's own converters first.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from highmark.destinations.mariadb_load import load_csv
from highmark.destinations.ranges import TargetPlan, columns_of, refusing_unconvertible
from highmark.destinations.sqlite_attach import range_select
from highmark.sources.base import CopyRange
from highmark.sources.postgres_copy import PostgresCopyRange
from highmark.sqltypes import ColumnInfo, Family, TimestampKind

FETCH_ROWS = 10_000
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
        self.fixes = [
            (i, _fix(src, tgt, convert, plan)) for i, src, tgt, convert in columns_of(plan)
        ]

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
                for row in chunk:
                    values = list(row)
                    for i, fix in fixes:
                        values[i] = fix(values[i])
                    writer.writerow(values)
                yield text.getvalue().encode()
        finally:
            reader.close()


def _fix(
    src: ColumnInfo, tgt: ColumnInfo, convert: Callable[[Any], Any], plan: TargetPlan
) -> Callable[[Any], Any]:
    """A source value as CSV takes it: as it is where MariaDB reads it as the row path writes."""
    if src.family is Family.TIMESTAMP and tgt.family is Family.TIMESTAMP:
        utc = tgt.timestamp_kind is TimestampKind.UTC_NAIVE
        if ZoneInfo("UTC" if utc else plan.target_zone) == ZoneInfo(plan.source_zone):
            return lambda v: NULL if v is None else (v if _row_path_text(v) else _text(convert(v)))
    kept = _AS_IS.get(src.family) if src.family is tgt.family else None
    if kept is not None:
        return lambda v: NULL if v is None else (v if isinstance(v, kept) else _text(convert(v)))
    return lambda v: NULL if v is None else _text(convert(v))


def _row_path_text(value: Any) -> bool:
    """``YYYY-MM-DD HH:MM:SS.ffffff``, as the row path writes a timestamp into SQLite. MariaDB
    refuses (with a warning, which refuses the range) what else the row path would refuse in
    that form, but for the year 0, which it stores."""
    return (
        value.__class__ is str
        and len(value) == 26
        and value[10] == " "
        and value[19] == "."
        and value[:4].isdigit()
        and value[:4] != "0000"
    )


def _text(value: Any) -> Any:
    """A converted value as CSV takes it (bools as 0/1, the rest as their text)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str):
        return value
    return str(value)
