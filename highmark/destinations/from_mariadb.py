"""MySQL/MariaDB → PostgreSQL or SQLite: each key range read with an unbuffered cursor as tuples
whose values MariaDB already put in the form the row path would write, and handed on as they
come: into ``COPY … FROM STDIN`` (PostgreSQL) or ``executemany`` (SQLite).

MariaDB formats in the SELECT what the row path converts in Python: timestamps as text (into a
PostgreSQL ``timestamptz`` read in the source's zone, which the COPY's transaction sets; into
SQLite as the row path's six-digit text, when the zones agree), decimals, dates and times as
text, booleans as 0/1. A column with no such form (a zone MariaDB would have to convert, a type
without a text form here) keeps the job on the row path. Each range is read as one stretch of the
clustered index, not a scan of the table (highmark/sources/mariadb_stretch.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from highmark.destinations.ranges import TargetPlan, pg_literal
from highmark.sources.base import CopyRange, RangeRefused
from highmark.sources.mariadb_stretch import key_bounded
from highmark.sources.postgres_copy import PostgresCopyRange
from highmark.sqltypes import ColumnInfo, Family, TimestampKind

FETCH_ROWS = 10_000
# The row path's text: six fraction digits (% doubled: the statement goes through pyformat).
SQLITE_TIMESTAMP = "'%%Y-%%m-%%d %%H:%%i:%%s.%%f'"


def select_list(plan: TargetPlan, target_dialect: str, quote: Any) -> list[str] | str:
    """Each target column as a MariaDB expression, or the reason there is none."""
    expressions = []
    for source_name, target_name in plan.mapping:
        src, tgt = plan.source.find(source_name), plan.target.find(target_name)
        assert src is not None and tgt is not None
        column = quote(source_name)
        if target_dialect == "postgresql":
            expression = _for_postgresql(src, tgt, column)
        else:
            expression = _for_sqlite(src, tgt, column, plan)
        if expression is None:
            return f"column {source_name} is {src.family} in the source, {tgt.family} in the target"
        expressions.append(expression)
    return expressions


def _for_postgresql(src: ColumnInfo, tgt: ColumnInfo, column: str) -> str | None:
    if src.family is Family.TIMESTAMP:
        if tgt.timestamp_kind is not TimestampKind.AWARE:
            return None
        if src.timestamp_kind is TimestampKind.UTC_NAIVE:  # read in the session's UTC
            return f"CONCAT(CAST({column} AS CHAR), '+00')"
        return f"CAST({column} AS CHAR)"  # wall time in the source's zone: the COPY's TimeZone
    if src.family is Family.JSON:
        return column if type(tgt.type).__name__ == "JSONB" else None
    return _common(src, tgt, column, time_text=True)


def _for_sqlite(src: ColumnInfo, tgt: ColumnInfo, column: str, plan: TargetPlan) -> str | None:
    if src.family is Family.TIMESTAMP:
        utc = src.timestamp_kind is TimestampKind.UTC_NAIVE
        if ZoneInfo("UTC" if utc else plan.source_zone) != ZoneInfo(plan.target_zone):
            return None
        return f"DATE_FORMAT({column}, {SQLITE_TIMESTAMP})"
    return _common(src, tgt, column, time_text=False)


def _common(src: ColumnInfo, tgt: ColumnInfo, column: str, *, time_text: bool) -> str | None:
    family = src.family
    if tgt.family is not family:
        return None
    if family in (Family.INTEGER, Family.FLOAT, Family.STRING, Family.BINARY):
        return column
    if family in (Family.DECIMAL, Family.DATE) or (family is Family.TIME and time_text):
        return f"CAST({column} AS CHAR)"
    if family is Family.BOOLEAN:
        return f"({column} <> 0)"
    return None


@contextmanager
def _fetch(
    source_range: CopyRange, expressions: list[str], key_column: str
) -> Iterator[Iterator[Any]]:
    """The range's rows from an unbuffered cursor, in lists of up to FETCH_ROWS tuples, read as
    one stretch of the clustered index (``key_column``: the first primary-key column, by which it is
    bounded too: highmark/sources/mariadb_stretch.py)."""
    from pymysql.cursors import SSCursor

    assert isinstance(source_range, PostgresCopyRange)
    source = source_range.source
    quote = source.engine.dialect.identifier_preparer.quote
    table = source.describe()
    name = ".".join(quote(p) for p in table.qualified_name.split("."))
    with source._errors("cannot read"), source.engine.connect() as conn:
        raw: Any = conn.connection.dbapi_connection
        with raw.cursor() as cursor:
            found = key_bounded(
                cursor, quote(key_column), name, source_range, source.engine.dialect
            )
        if found is None:  # the range's rows are gone (deleted since it was probed)
            yield iter(())
        else:
            bounded, bounds = found
            with raw.cursor(SSCursor) as cursor:
                cursor.execute(
                    f"SELECT {', '.join(expressions)} FROM {name} WHERE {bounded}", bounds
                )
                yield iter(lambda: cursor.fetchmany(FETCH_ROWS), ())
        conn.rollback()


def _key(plan: TargetPlan, primary_key: str) -> str:
    """The source's own name of the job's first primary-key column (InnoDB's row order)."""
    found = plan.source.find(primary_key)
    assert found is not None
    return found.name


class MariadbIntoPostgres:
    parallel = True

    def __init__(self, plan: TargetPlan, expressions: list[str], primary_key: str) -> None:
        self.plan = plan
        self.expressions = expressions
        self.key = _key(plan, primary_key)

    def load(
        self, conn: Connection, quoted_table: str, columns: list[str], source_range: CopyRange
    ) -> int:
        from psycopg import errors

        raw: Any = conn.connection.dbapi_connection
        names = ", ".join(self.plan.quote(c) for c in columns)
        loaded = 0
        try:
            with raw.cursor() as cursor:
                zone = pg_literal(str(ZoneInfo(self.plan.source_zone)))
                cursor.execute(f"SET LOCAL TimeZone = {zone}")
                with (
                    _fetch(source_range, self.expressions, self.key) as chunks,
                    cursor.copy(f"COPY {quoted_table} ({names}) FROM STDIN") as copy,
                ):
                    for rows in chunks:
                        for row in rows:
                            copy.write_row(row)
                        loaded += len(rows)
                cursor.execute("SET LOCAL TimeZone = 'UTC'")
        except (errors.DataError, errors.IntegrityError) as exc:
            raise RangeRefused(f"the target refused a value: {exc}") from exc
        return loaded


class MariadbIntoSqlite:
    parallel = False  # one writer at a time in a SQLite file

    def __init__(self, plan: TargetPlan, expressions: list[str], primary_key: str) -> None:
        self.plan = plan
        self.expressions = expressions
        self.key = _key(plan, primary_key)

    def load(
        self, conn: Connection, quoted_table: str, columns: list[str], source_range: CopyRange
    ) -> int:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        names = ", ".join(self.plan.quote(c) for c in columns)
        statement = f"INSERT INTO {quoted_table} ({names}) VALUES ({', '.join('?' * len(columns))})"
        loaded = 0
        with _fetch(source_range, self.expressions, self.key) as chunks:
            for rows in chunks:
                try:
                    raw.executemany(statement, rows)
                except sqlite3.IntegrityError as exc:
                    raise RangeRefused(f"the target refused a row: {exc}") from exc
                loaded += len(rows)
        return loaded
