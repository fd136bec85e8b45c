"""The table of one entity: its DDL, the check of an existing one, and the statements that write it.

Column types per dialect:

=========  ====================  =================================  ==========
field      PostgreSQL            MySQL/MariaDB                      SQLite
=========  ====================  =================================  ==========
TEXT       text                  LONGTEXT; VARCHAR(255) utf8mb4_bin  TEXT
                                 when in the key or the parent
INTEGER    bigint                BIGINT                             BIGINT
BOOLEAN    boolean               BOOL                               BOOLEAN
TIMESTAMP  timestamptz           DATETIME(6) holding UTC            ISO text
JSON, raw  jsonb                 JSON                               TEXT
FLOAT      double precision      DOUBLE                             DOUBLE
=========  ====================  =================================  ==========

Indexed text is ``utf8mb4_bin`` on MySQL: API ids are case-sensitive, and the default collations
would take ``aB`` and ``Ab`` for one key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Connection, Index, MetaData, PrimaryKeyConstraint, Table, inspect
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect

from highmark.destinations.entities import (
    DELETED_AT_COLUMN,
    MAX_IDENTIFIER_LENGTH,
    RAW_COLUMN,
    Entity,
    FieldType,
)
from highmark.destinations.record_values import ColumnCodec, codec
from highmark.sqlschema import TableSchema
from highmark.sqltypes import Family, describe_type

_ACCEPTED: dict[FieldType, set[Family]] = {
    FieldType.TEXT: {Family.STRING},
    FieldType.INTEGER: {Family.INTEGER},
    FieldType.BOOLEAN: {Family.BOOLEAN, Family.INTEGER},
    FieldType.TIMESTAMP: {Family.TIMESTAMP},
    FieldType.JSON: {Family.JSON, Family.STRING},
    FieldType.FLOAT: {Family.FLOAT, Family.DECIMAL},
}
_MYSQL_INDEXED_TEXT_LENGTH = 255


@dataclass(frozen=True)
class Wanted:
    """A column the writer needs: a field, ``raw``, or ``deleted_at``."""

    name: str
    type: FieldType
    nullable: bool
    indexed: bool  # in the key or the parent: must be indexable (VARCHAR on MySQL)


def wanted_columns(entity: Entity, *, mark: bool) -> list[Wanted]:
    indexed = {*entity.key, *([entity.parent] if entity.parent else [])}
    columns = [
        Wanted(f.name, f.type, entity.is_nullable(f.name), f.name in indexed) for f in entity.fields
    ]
    columns.append(Wanted(RAW_COLUMN, FieldType.JSON, False, False))
    if mark:
        columns.append(Wanted(DELETED_AT_COLUMN, FieldType.TIMESTAMP, True, False))
    return columns


def ddl_type(ftype: FieldType, dialect: str, *, indexed: bool) -> sqltypes.TypeEngine[Any]:
    """The type of a new column for a field of type ``ftype``."""
    if dialect == "mysql":
        from sqlalchemy.dialects import mysql  # imported where used: ~90 ms

        if ftype is FieldType.TEXT:
            if indexed:
                return mysql.VARCHAR(
                    _MYSQL_INDEXED_TEXT_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"
                )
            return mysql.LONGTEXT(charset="utf8mb4")
        if ftype is FieldType.TIMESTAMP:
            return mysql.DATETIME(fsp=6)
        if ftype is FieldType.JSON:
            return mysql.JSON()
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        if ftype is FieldType.TIMESTAMP:
            return postgresql.TIMESTAMP(timezone=True)
        if ftype is FieldType.JSON:
            return postgresql.JSONB()
    portable: dict[FieldType, sqltypes.TypeEngine[Any]] = {
        FieldType.TEXT: sqltypes.Text(),
        FieldType.INTEGER: sqltypes.BigInteger(),
        FieldType.BOOLEAN: sqltypes.Boolean(create_constraint=False),
        FieldType.TIMESTAMP: sqltypes.DateTime(),
        FieldType.JSON: sqltypes.Text(),
        FieldType.FLOAT: sqltypes.Double(),
    }
    return portable[ftype]


def parent_index_name(table: str, parent: str) -> str:
    name = f"{table}_{parent}_idx"
    if len(name) <= MAX_IDENTIFIER_LENGTH:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{table[:40]}_{digest}_idx"


def new_table(entity: Entity, schema: str | None, name: str, dialect: str, *, mark: bool) -> Table:
    """The table to create for ``entity``, with its primary key and its parent index."""
    columns = [
        Column(
            w.name,
            ddl_type(w.type, dialect, indexed=w.indexed),
            nullable=w.nullable,
            autoincrement=False,  # API ids are given, never generated
        )
        for w in wanted_columns(entity, mark=mark)
    ]
    table = Table(
        name,
        MetaData(),
        *columns,
        PrimaryKeyConstraint(*entity.key),
        schema=schema,
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    if entity.parent is not None and entity.key[0] != entity.parent:
        Index(parent_index_name(name, entity.parent), table.c[entity.parent])
    return table


@dataclass
class Review:
    """What an existing table lacks: conflicts refuse the writer; the rest ``prepare`` adds."""

    problems: list[str]
    add_columns: list[Wanted]
    add_parent_index: bool


def review(conn: Connection, entity: Entity, target: TableSchema, *, mark: bool) -> Review:
    """Compare an existing table with what ``entity`` needs."""
    problems: list[str] = []
    additions: list[Wanted] = []
    for want in wanted_columns(entity, mark=mark):
        have = target.find(want.name)
        if have is None:
            if want.nullable or want.name == RAW_COLUMN:
                additions.append(want)
            else:
                problems.append(
                    f"column {want.name} is missing and cannot be added to the existing rows "
                    f"(NOT NULL): add it with values, or drop the table"
                )
            continue
        if have.name != want.name and target.dialect == "postgresql":  # case-sensitive there
            problems.append(f"column {have.name} should be spelled {want.name}: rename it")
        elif not _accepts(want.type, have.family, have.type, target.dialect):
            problems.append(
                f"column {want.name} is {describe_type(have)} but the field is {want.type.name}: "
                f"change its type to {_ddl_text(want, target.dialect, conn.dialect)} "
                f"or drop the table"
            )
    if not target.has_unique_key(list(entity.key)):
        keys = ", ".join(entity.key)
        problems.append(
            f"it has no primary key or unique index on ({keys}): add PRIMARY KEY ({keys})"
        )
    add_index = False
    if entity.parent is not None and target.find(entity.parent) is not None:
        leading = [target.primary_key[:1]] if target.primary_key else []
        for index in inspect(conn).get_indexes(target.name, schema=target.schema):
            leading.append(tuple(index["column_names"][:1]))  # type: ignore[arg-type]
        add_index = not any(
            lead and str(lead[0]).lower() == entity.parent.lower() for lead in leading
        )
    return Review(problems, additions, add_index)


def _accepts(ftype: FieldType, family: Family, type_: Any, dialect: str) -> bool:
    if family not in _ACCEPTED[ftype]:
        return False
    if ftype is FieldType.INTEGER and dialect != "sqlite":
        return isinstance(type_, sqltypes.BigInteger)  # API ids outgrow 32 bits
    return True


def _ddl_text(want: Wanted, dialect_name: str, dialect: Dialect) -> str:
    return str(ddl_type(want.type, dialect_name, indexed=want.indexed).compile(dialect=dialect))


def add_column_sql(quoted_table: str, want: Wanted, dialect: Dialect) -> str:
    column = dialect.identifier_preparer.quote(want.name)
    return (
        f"ALTER TABLE {quoted_table} ADD COLUMN {column} {_ddl_text(want, dialect.name, dialect)}"
    )


def column_type_text(want: Wanted, dialect: Dialect) -> str:
    """The type of an added column, as its DDL says it."""
    return _ddl_text(want, dialect.name, dialect)


class RecordTable:
    """A prepared entity table: its codecs, and the statements that read and write it.

    Rows are tuples of canonical values in column order: the fields, ``raw``, then ``deleted_at``
    when deletions are marked.
    """

    def __init__(
        self, entity: Entity, target: TableSchema, dialect: Dialect, zone: ZoneInfo, *, mark: bool
    ) -> None:
        self.entity = entity
        self.mark = mark
        self.dialect = dialect.name
        quote = dialect.identifier_preparer.quote
        self.quoted = self.quote_table(dialect, target.schema, target.name)
        wanted = wanted_columns(entity, mark=mark)
        self.columns: list[ColumnCodec] = []
        for want in wanted:
            info = target.find(want.name)
            assert info is not None, "reviewed before"
            self.columns.append(codec(want.name, want.type, info, dialect.name, zone))
        names = [c.name for c in self.columns]
        self.names = names
        self._given = frozenset([*(f.name for f in entity.fields), RAW_COLUMN])
        self._plan = [
            (c.name, c.canonical, w.nullable)
            for c, w in zip(self.columns, wanted, strict=True)
            if c.name != DELETED_AT_COLUMN
        ]
        self.key_index = [names.index(k) for k in entity.key]
        self.parent_index = names.index(entity.parent) if entity.parent else None
        self.version_index = names.index(entity.version) if entity.version else None
        self.stamp_index = names.index(entity.stamp) if entity.stamp else None
        self.json_index = [i for i, c in enumerate(self.columns) if c.exact is not None]
        self.marker = "?" if self.dialect == "sqlite" else "%s"
        self._q = {n: quote(n) for n in names}
        self._key_sql = ", ".join(self._q[k] for k in entity.key)
        # psycopg's jsonb loader is slow: jsonb comes as text, parsed by the codec.
        self._selected = [
            f"CAST({self._q[c.name]} AS text)" if c.json_as_text else self._q[c.name]
            for c in self.columns
        ]
        self._live = f" AND {self._q[DELETED_AT_COLUMN]} IS NULL" if mark else ""

    @staticmethod
    def quote_table(dialect: Dialect, schema: str | None, name: str) -> str:
        quote = dialect.identifier_preparer.quote
        return f"{quote(schema)}.{quote(name)}" if schema else quote(name)

    # ------------------------------------------------------------------ statements

    def _in_keys(self, count: int) -> str:
        """``key IN (…)`` for ``count`` keys (a row-value IN for composite keys)."""
        width = len(self.entity.key)
        one = self.marker if width == 1 else f"({', '.join([self.marker] * width)})"
        column = self._key_sql if width == 1 else f"({self._key_sql})"
        return f"{column} IN ({', '.join([one] * count)})"

    def select_sql(self, count: int) -> str:
        columns = ", ".join(self._selected)
        return f"SELECT {columns} FROM {self.quoted} WHERE {self._in_keys(count)}"

    def children_sql(self, count: int) -> str:
        assert self.entity.parent is not None
        parent = self._q[self.entity.parent]
        return (
            f"SELECT {self._key_sql} FROM {self.quoted} "
            f"WHERE {parent} IN ({', '.join([self.marker] * count)}){self._live}"
        )

    def stale_children_sql(self, count: int) -> str:
        """Keys of the parents' live children stamped otherwise than the first parameter."""
        assert self.entity.parent is not None and self.entity.stamp is not None
        parent, stamp = self._q[self.entity.parent], self._q[self.entity.stamp]
        return (
            f"SELECT {self._key_sql} FROM {self.quoted} "
            f"WHERE ({stamp} IS NULL OR {stamp} <> {self.marker}) "
            f"AND {parent} IN ({', '.join([self.marker] * count)}){self._live}"
        )

    def keys_sql(self, where: Sequence[tuple[str, bool]]) -> str:
        """Live keys, optionally where each ``(column, is_null)`` is equal to a value or null."""
        conditions = [
            f"{self._q[name]} IS NULL" if is_null else f"{self._q[name]} = {self.marker}"
            for name, is_null in where
        ]
        if self.mark:
            conditions.append(f"{self._q[DELETED_AT_COLUMN]} IS NULL")
        clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {self._key_sql} FROM {self.quoted}{clause}"

    def restamp_sql(self, count: int) -> str:
        """Set the stamp (first parameter) of the rows of ``count`` keys."""
        assert self.entity.stamp is not None
        return (
            f"UPDATE {self.quoted} SET {self._q[self.entity.stamp]} = {self.marker} "
            f"WHERE {self._in_keys(count)}"
        )

    def remove_sql(self, count: int) -> str:
        """Delete rows by key, or mark the live ones deleted (first parameter: the time)."""
        if self.mark:
            return (
                f"UPDATE {self.quoted} SET {self._q[DELETED_AT_COLUMN]} = {self.marker} "
                f"WHERE {self._in_keys(count)}{self._live}"
            )
        return f"DELETE FROM {self.quoted} WHERE {self._in_keys(count)}"

    def upsert_sql(self) -> str:
        """One row inserted, or the stored row with that key overwritten (executemany'd)."""
        columns = ", ".join(self._q[n] for n in self.names)
        values = ", ".join([self.marker] * len(self.names))
        head = f"INSERT INTO {self.quoted} ({columns}) VALUES ({values})"
        rest = [self._q[n] for n in self.names if n not in self.entity.key]  # raw at least
        if self.dialect == "mysql":
            # PyMySQL turns an executemany of this shape into multi-row INSERTs.
            sets = ", ".join(f"{c} = VALUES({c})" for c in rest)
            return f"{head} ON DUPLICATE KEY UPDATE {sets}"
        sets = ", ".join(f"{c} = excluded.{c}" for c in rest)
        return f"{head} ON CONFLICT ({self._key_sql}) DO UPDATE SET {sets}"

    # ------------------------------------------------------------------ values

    def canonical_row(self, obj: dict[str, Any]) -> tuple[Any, ...]:
        """An incoming object (every field and ``raw``) as a canonical row; ``deleted_at`` None."""
        if obj.keys() != self._given:
            missing = sorted(self._given - obj.keys())
            extra = sorted(obj.keys() - self._given)
            raise ValueError(
                (f"missing {', '.join(missing)}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"unknown {', '.join(map(str, extra))}" if extra else "")
            )
        row: list[Any] = []
        append = row.append
        name = ""
        try:
            for name, canonical, nullable in self._plan:
                value = obj[name]
                if value is None:
                    if not nullable:
                        raise ValueError("None, but the field cannot be null")
                    append(None)
                else:
                    append(canonical(value))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: {exc}") from None
        if self.mark:
            append(None)  # deleted_at: an upserted row is live
        return tuple(row)

    def canonical_key(self, key: tuple[Any, ...], *, parent: bool = False) -> tuple[Any, ...]:
        """A key (or, with ``parent``, a 1-tuple parent id) in canonical form."""
        if parent:
            assert self.parent_index is not None
        indexes = (
            [self.parent_index] if parent and self.parent_index is not None else self.key_index
        )
        if not isinstance(key, tuple | list) or len(key) != len(indexes):
            raise ValueError(f"{key!r} is not a tuple of {len(indexes)} value(s)")
        if any(v is None for v in key):
            raise ValueError("None in a key")
        return tuple(self.columns[i].canonical(v) for i, v in zip(indexes, key, strict=True))

    def param(self, name: str, value: Any) -> Any:
        """An incoming value of column ``name`` as the driver takes it."""
        column = self.columns[self.names.index(name)]
        canonical = column.canonical(value)
        return column.to_db(canonical) if column.to_db is not None else canonical

    def deleted_at_param(self, now: datetime) -> Any:
        return self.param(DELETED_AT_COLUMN, now)

    def key_params(self, keys: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Canonical keys as the flat parameter list of :meth:`_in_keys`."""
        return self.key_params_for(None, keys)

    def key_params_for(self, index: int | None, keys: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Canonical keys (of the key columns, or 1-tuples of column ``index``) as parameters."""
        indexes = self.key_index if index is None else [index]
        params: list[Any] = []
        for key in keys:
            for i, value in zip(indexes, key, strict=True):
                convert = self.columns[i].to_db
                params.append(convert(value) if convert is not None else value)
        return params

    def db_row(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """A canonical row as the driver takes it."""
        return tuple(
            c.to_db(v) if c.to_db is not None and v is not None else v
            for c, v in zip(self.columns, row, strict=True)
        )

    def from_db(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A driver row (all columns) in canonical form."""
        return tuple(
            c.from_db(v) if c.from_db is not None and v is not None else v
            for c, v in zip(self.columns, row, strict=True)
        )

    def key_from_db(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A driver row of the key columns in canonical form."""
        out = []
        for index, value in zip(self.key_index, row, strict=True):
            convert = self.columns[index].from_db
            out.append(convert(value) if convert is not None and value is not None else value)
        return tuple(out)

    def same(self, stored: tuple[Any, ...], incoming: tuple[Any, ...]) -> bool:
        """Equal rows, JSON compared as JSON (stored text parsed again when the texts differ);
        the stamp is not compared."""
        if stored == incoming:
            return True
        for index, (a, b) in enumerate(zip(stored, incoming, strict=True)):
            if a == b or index == self.stamp_index:
                continue
            exact = self.columns[index].exact
            if exact is None or a is None or exact(a) != b:
                return False
        return True
