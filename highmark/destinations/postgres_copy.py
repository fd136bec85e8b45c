"""The COPY fast path into PostgreSQL targets.

From a PostgreSQL source, a batch is a key range that is streamed ``COPY … TO STDOUT`` from the
source straight into ``COPY … FROM STDIN`` on the target, in binary when every column is a
built-in type, each column cast in the source's SELECT to the target column's type (time zones
applied there too), so no row becomes a Python object. From other sources, rows already in Python
go in with ``COPY … FROM STDIN`` and ``write_row`` instead of INSERT statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from highmark.sources.base import CopyRange
from highmark.sqlschema import TableSchema
from highmark.sqltypes import Family, TimestampKind

# OIDs below this are PostgreSQL's own types: their binary form is the same on every server.
FIRST_USER_OID = 16384


@dataclass(frozen=True)
class TargetColumn:
    name: str
    base_type: str  # format_type without the modifier: the type a value is cast to
    oid: int


def target_columns(conn: Connection, quoted_table: str) -> dict[str, TargetColumn]:
    rows = conn.execute(
        text(
            "SELECT attname, format_type(atttypid, NULL), atttypid::int FROM pg_attribute "
            "WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped"
        ),
        {"table": quoted_table},
    ).all()
    return {r[0]: TargetColumn(r[0], r[1], r[2]) for r in rows}


def select_list(
    source: TableSchema,
    source_zone: str,
    mapping: list[tuple[str, str]],
    target: TableSchema,
    target_zone: str,
    types: dict[str, TargetColumn],
    quote: Any,
) -> tuple[list[str], bool]:
    """Each target column as an expression over the source's, and whether binary COPY fits."""
    expressions = []
    binary = all(types[t].oid < FIRST_USER_OID for _, t in mapping)
    for source_name, target_name in mapping:
        src = source.find(source_name)
        tgt = target.find(target_name)
        assert src is not None and tgt is not None
        column = quote(source_name)
        if src.family is Family.TIMESTAMP and tgt.family is Family.TIMESTAMP:
            if src.timestamp_kind is not TimestampKind.AWARE:
                column = f"({column} AT TIME ZONE {_literal(source_zone)})"
            if tgt.timestamp_kind is not TimestampKind.AWARE:
                column = f"({column} AT TIME ZONE {_literal(target_zone)})"
        expressions.append(f"CAST({column} AS {types[target_name].base_type})")
    return expressions, binary


def copy_range(
    conn: Connection,
    quoted_table: str,
    columns: list[str],
    source_range: CopyRange,
    expressions: list[str],
    *,
    binary: bool,
    quote: Any,
) -> int:
    """Stream a source range into ``quoted_table``; return the number of rows copied."""
    raw: Any = conn.connection.dbapi_connection
    fmt = " (FORMAT binary)" if binary else ""
    statement = f"COPY {quoted_table} ({', '.join(quote(c) for c in columns)}) FROM STDIN{fmt}"
    with raw.cursor() as cursor:
        with (
            source_range.stream(expressions, binary=binary) as chunks,
            cursor.copy(statement) as copy,
        ):
            for chunk in chunks:
                copy.write(chunk)
        return int(cursor.rowcount)


def copy_rows(
    conn: Connection, quoted_table: str, columns: list[str], rows: list[tuple[Any, ...]], quote: Any
) -> int:
    """Rows already in Python, into ``quoted_table`` with COPY (much faster than INSERTs)."""
    raw: Any = conn.connection.dbapi_connection
    statement = f"COPY {quoted_table} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    with raw.cursor() as cursor:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        return len(rows)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
