"""The ALTERs a schema plan applies, on SQLite, PostgreSQL and MySQL/MariaDB.

Added columns are nullable (rows already loaded have no value for them). A widened column keeps
its nullability; SQLite never needs one (it enforces no length or size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, Table, text
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect

from highmark.sqlschema import TableSchema
from highmark.sqltypes import target_type


@dataclass(frozen=True)
class Alteration:
    """One ALTER of a target table: add ``column`` of ``type``, or widen it to ``type``."""

    column: str
    type: sqltypes.TypeEngine[Any]
    add: bool
    nullable: bool = True
    # A naive timestamp column widened to timestamptz: the zone its wall times are in.
    wall_time_zone: str | None = None


def _dialect(name: str) -> Dialect:
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    if name == "mysql":
        from sqlalchemy.dialects import mysql

        return mysql.pymysql.dialect()
    from sqlalchemy.dialects import sqlite

    return sqlite.pysqlite.dialect()


def compile_type(type_: sqltypes.TypeEngine[Any], dialect: str) -> str:
    """A type as ``dialect`` writes it in DDL (``VARCHAR(20)``, ``TIMESTAMP(6) WITH TIME ZONE``)."""
    try:
        return str(type_.compile(dialect=_dialect(dialect)))
    except Exception:  # a type of another dialect: its own name says enough
        return str(type_.compile())


def statement(connection: Connection, table: str, change: Alteration) -> str:
    """The ALTER TABLE of one change (``table`` already quoted)."""
    dialect = connection.dialect.name
    column = connection.dialect.identifier_preparer.quote(change.column)
    type_sql = compile_type(change.type, dialect)
    if change.add:
        return f"ALTER TABLE {table} ADD COLUMN {column} {type_sql}"
    if dialect == "postgresql":
        using = ""
        if change.wall_time_zone is not None:
            zone = change.wall_time_zone.replace("'", "''")
            using = f" USING {column} AT TIME ZONE '{zone}'"
        return f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {type_sql}{using}"
    null = "NULL" if change.nullable else "NOT NULL"
    return f"ALTER TABLE {table} MODIFY COLUMN {column} {type_sql} {null}"


def apply(connection: Connection, table: str, changes: list[Alteration]) -> None:
    """Run the ALTERs (in the caller's transaction: PostgreSQL and SQLite roll them back together
    on failure; MySQL commits each DDL statement on its own)."""
    for change in changes:
        connection.execute(text(statement(connection, table, change)))


def create_table(
    connection: Connection, schema: str | None, name: str, source: TableSchema, key: list[str]
) -> None:
    """Create a target for ``source``: its columns in the target dialect's types
    (sqltypes.target_type), nullable but for the primary key ``key``."""
    dialect = connection.dialect.name
    in_key = {c.lower() for c in key}
    columns = [
        Column(
            col.name,
            target_type(col, dialect, in_key=col.name.lower() in in_key),
            nullable=col.name.lower() not in in_key,
        )
        for col in source.columns
    ]
    names = [source.find(c).name for c in key]  # type: ignore[union-attr]
    table = Table(name, MetaData(), *columns, PrimaryKeyConstraint(*names), schema=schema)
    table.create(connection)
