"""PostgreSQL → SQLite: each key range read from a server-side cursor with every value already in
the form the row path writes into SQLite, and handed to sqlite3's ``executemany`` as it comes
(read ahead on a thread of its own, highmark/prefetch.py: PostgreSQL formats and sends the next
rows while SQLite inserts these).

PostgreSQL does the conversions the row path does in Python (timestamps to text in the target's
zone, decimals and UUIDs to text, booleans to 0/1), so no value passes through a converter and no
row becomes a dict. Columns of other kinds keep the job on the row path.
"""

from __future__ import annotations

import sqlite3
from zoneinfo import ZoneInfo

from psycopg import DataError
from sqlalchemy import Connection

from highmark import infinity, prefetch
from highmark.destinations.ranges import TargetPlan, pg_literal, pg_name
from highmark.sources.base import CopyRange, RangeRefused
from highmark.sources.postgres_copy import PostgresCopyRange
from highmark.sqltypes import ColumnInfo, Family, TimestampKind

FETCH_ROWS = 10_000  # rows per executemany: memory stays small whatever the batch size


def unavailable(plan: TargetPlan) -> str | None:
    for source_name, target_name in plan.mapping:
        src, tgt = plan.source.find(source_name), plan.target.find(target_name)
        assert src is not None and tgt is not None
        if _expression(src, tgt, "c", plan) is None:
            return f"column {source_name} is {src.family} in the source, {tgt.family} in the target"
    return None


class PostgresIntoSqlite:
    parallel = False  # one writer at a time in a SQLite file

    def __init__(self, plan: TargetPlan) -> None:
        self.plan = plan
        self.expressions: list[str] = []
        for source_name, target_name in plan.mapping:
            src, tgt = plan.source.find(source_name), plan.target.find(target_name)
            assert src is not None and tgt is not None
            expression = _expression(src, tgt, pg_name(source_name), plan)
            assert expression is not None
            self.expressions.append(expression)

    def load(
        self, conn: Connection, quoted_table: str, columns: list[str], source_range: CopyRange
    ) -> int:
        assert isinstance(source_range, PostgresCopyRange)
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        names = ", ".join(self.plan.quote(c) for c in columns)
        statement = f"INSERT INTO {quoted_table} ({names}) VALUES ({', '.join('?' * len(columns))})"
        loaded = 0
        with (
            source_range.fetch(self.expressions, FETCH_ROWS) as fetched,
            prefetch.prefetched(fetched) as chunks,
        ):
            try:
                for rows in chunks:
                    raw.executemany(statement, rows)
                    loaded += len(rows)
            except sqlite3.IntegrityError as exc:
                raise RangeRefused(f"the target refused a row: {exc}") from exc
            except DataError as exc:  # a value the row path refuses (infinity.sql_case, NaN)
                raise RangeRefused(f"the source has a value the row path refuses: {exc}") from exc
        return loaded


def _expression(src: ColumnInfo, tgt: ColumnInfo, column: str, plan: TargetPlan) -> str | None:
    """``column`` as PostgreSQL gives it in the row path's SQLite form, or None (no such form)."""
    family = src.family
    name = column
    if family is Family.TIMESTAMP and tgt.family is Family.TIMESTAMP:
        if src.timestamp_kind is not TimestampKind.AWARE:
            column = f"({column} AT TIME ZONE {pg_literal(plan.source_zone)})"
        zone = str(ZoneInfo(plan.target_zone))
        text = f"to_char({column} AT TIME ZONE {pg_literal(zone)}, 'YYYY-MM-DD HH24:MI:SS.US')"
        return infinity.sql_case(name, text, day=False, refuse_beyond=True)
    if tgt.family is not family and not (family is Family.UUID and tgt.family is Family.STRING):
        return None
    if family is Family.FLOAT:  # SQLite would store a NaN as NULL: the row path refuses it
        nan = "CAST('SQLite stores no NaN' AS float8)"  # fails the query: the range is refused
        return f"CASE WHEN {column} = 'NaN' THEN {nan} ELSE {column} END"
    if family in (Family.INTEGER, Family.STRING):
        return column
    if family is Family.DATE:
        return infinity.sql_case(name, f"CAST({column} AS text)", day=True, refuse_beyond=True)
    if family in (Family.DECIMAL, Family.UUID):
        return f"CAST({column} AS text)"
    if family is Family.BOOLEAN:
        return f"CAST({column} AS integer)"
    if family is Family.JSON and type(src.type).__name__ == "JSONB":
        return f"CAST({column} AS text)"  # jsonb's text is json.dumps of its value
    return None
