"""Reflecting source and target tables into :class:`TableSchema`, and naming them in SQL."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, column, inspect, table
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.sql.expression import TableClause

from highmark.sqltypes import ColumnInfo, column_info


@dataclass(frozen=True)
class TableSchema:
    """A table as highmark sees it: columns in order, primary key and unique keys."""

    schema: str | None
    name: str
    dialect: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...]
    unique_keys: tuple[tuple[str, ...], ...]

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def find(self, name: str) -> ColumnInfo | None:
        """The column called ``name``: exact match first, then case-insensitive."""
        for col in self.columns:
            if col.name == name:
                return col
        lowered = name.lower()
        for col in self.columns:
            if col.name.lower() == lowered:
                return col
        return None

    def has_unique_key(self, names: list[str]) -> bool:
        wanted = {n.lower() for n in names}
        keys = [self.primary_key, *self.unique_keys]
        return any(key and {k.lower() for k in key} == wanted for key in keys)

    def clause(self, names: list[str] | None = None) -> TableClause:
        """A lightweight table construct whose columns carry no type: values pass through raw."""
        return raw_table(self.name, self.schema, names or [c.name for c in self.columns])


def raw_table(name: str, schema: str | None, columns: list[str]) -> TableClause:
    return table(name, *(column(c) for c in columns), schema=schema)


def reflect(
    connection: Connection, schema: str | None, name: str, *, keys: bool = True
) -> TableSchema | None:
    """Read a table's definition from the database, or None when it does not exist.

    ``keys=False`` leaves out the primary and unique keys (empty in the result): half the
    catalog queries, for a source, whose keys nothing reads (the job names its primary key).
    """
    if connection.dialect.name == "sqlite":
        from highmark.schema import sqlite_decimal  # noqa: F401  (reflects DECIMAL_TEXT)
    inspector = inspect(connection)
    try:  # (not has_table() first: a round trip more, and a run reflects two or three tables)
        raw_columns = inspector.get_columns(name, schema=schema)
    except NoSuchTableError:
        return None
    dialect = connection.dialect.name
    columns = tuple(
        column_info(c["name"], c["type"], bool(c.get("nullable", True)), dialect)
        for c in raw_columns
    )
    pk: tuple[str, ...] = ()
    uniques: list[tuple[str, ...]] = []
    if keys:
        pk = tuple(
            inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or ()
        )
        if dialect == "sqlite":
            # Elsewhere a unique constraint's index is among get_indexes()'s unique ones below:
            # reading the constraints too would cost a catalog query and list each key twice.
            uniques += [
                tuple(u["column_names"])
                for u in inspector.get_unique_constraints(name, schema=schema)
            ]
        uniques += [
            tuple(c for c in i["column_names"] if c is not None)
            for i in inspector.get_indexes(name, schema=schema)
            if i.get("unique") and all(i["column_names"])
        ]
    return TableSchema(
        schema=schema,
        name=name,
        dialect=dialect,
        columns=columns,
        primary_key=pk,
        unique_keys=tuple(uniques),
    )
