"""API records as a target: one table per entity, upserted by the API's stable id.

An API connector declares its :class:`~highmark.destinations.entities.Entity` kinds and hands
pages of :class:`~highmark.destinations.entities.EntityChanges` to :class:`RecordWriter`, which
writes them in one target transaction per call, on SQLite, PostgreSQL or MySQL/MariaDB::

    with RecordWriter(connection, "github_", [PULL_REQUESTS, COMMITS], deletes="mark") as writer:
        writer.prepare()                       # tables created or checked; writer.prepared: notes
        counts = writer.write([EntityChanges("pull_requests", upserts=[...]),
                               EntityChanges("commits", upserts=[...], replace_children_of=[...])])

A page is merged by comparing in Python: the stored rows of the page's keys are read (one query
per entity and 500 keys), each incoming row is compared with its stored row in canonical form
(:mod:`~highmark.destinations.record_values`: ``raw`` as JSON, so key order does not matter), and
only new and changed rows are sent: COPY for new rows on PostgreSQL, an executemany'd upsert
otherwise. Measured (``bench/records.py``), reading a page back costs about what staging it
would (PostgreSQL, 500 rows: SELECT by keys 30 ms, COPY to a stage and merge 30 ms), but a re-read
page, the common case, then sends nothing, the counts are exact, and JSON compares the same way
on every dialect (jsonb, MySQL's JSON and SQLite's text each compare differently in SQL).

The connector must be the table's only writer (a job never has two live runs): rows are compared
before they are written, without locks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Connection, Index, MetaData, Table
from sqlalchemy.exc import SQLAlchemyError

from highmark import clock
from highmark.config import ResolvedConnection
from highmark.config.columns import DEFAULT_SCHEMA_POLICY, SchemaPolicy
from highmark.db import get_engine
from highmark.destinations import postgres_copy
from highmark.destinations.entities import (
    DELETED_AT_COLUMN,
    MAX_IDENTIFIER_LENGTH,
    RAW_COLUMN,
    Entity,
    EntityChanges,
)
from highmark.destinations.record_tables import (
    RecordTable,
    Review,
    add_column_sql,
    column_type_text,
    new_table,
    parent_index_name,
    review,
)
from highmark.destinations.target import fresh_transaction
from highmark.errors import ConfigError, DestinationError, SchemaConflictError, translate_db_error
from highmark.models import Counts
from highmark.redact import register_secret
from highmark.schema.change import ChangeKind, SchemaChange
from highmark.sqlschema import TableSchema, reflect

DeleteMode = Literal["delete", "mark"]
KEYS_PER_STATEMENT = 500
_PREFIX = re.compile(r"^(?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)?$")
_MYSQL_TEXT_INDEX_PREFIX = 255


class RecordWriter:
    """Writes the entities of one API connector into tables ``<prefix><entity>``.

    ``prefix`` is an identifier prefix (``github_``), optionally behind a schema
    (``raw.github_``). ``deletes`` says what a deletion does: remove the row (``"delete"``) or set
    its ``deleted_at`` (``"mark"``; an upsert of a marked row clears it again).
    """

    def __init__(
        self,
        connection: ResolvedConnection,
        prefix: str,
        entities: Sequence[Entity],
        *,
        deletes: DeleteMode = "delete",
        schema_changes: SchemaPolicy = DEFAULT_SCHEMA_POLICY,
    ) -> None:
        match = _PREFIX.match(prefix)
        if match is None:
            raise ConfigError(
                f"table prefix {prefix!r} is not an identifier prefix such as github_ "
                f"(or schema.github_)"
            )
        if deletes not in ("delete", "mark"):
            raise ConfigError(f"deletes must be delete or mark, not {deletes!r}")
        self.schema: str | None = match.group(1)
        self.entities = {e.name: e for e in entities}
        if len(self.entities) != len(entities):
            raise ValueError("two entities share a name")
        self.table_names = {e.name: (match.group(2) or "") + e.name for e in entities}
        for name in self.table_names.values():
            if len(name) > MAX_IDENTIFIER_LENGTH:
                raise ConfigError(f"table name {name} is longer than 63 characters")
        self.connection = connection
        self.mark = deletes == "mark"
        password = connection.url.password
        register_secret(password if isinstance(password, str) else None)
        self.engine = get_engine(connection.url, "target")
        self.dialect = self.engine.dialect
        # COPY runs on the driver's own cursor: its errors come unwrapped.
        self._driver_error: type[Exception] = self.dialect.loaded_dbapi.Error
        self.zone = ZoneInfo(connection.timezone)
        self.policy = schema_changes
        self.prepared: list[str] = []
        """What :meth:`prepare` changed (tables created, indexes added), one note each, for the
        run's notes."""
        self.schema_changes: list[SchemaChange] = []
        """The columns :meth:`prepare` added to existing tables, for the run to record."""
        self._tables: dict[str, RecordTable] = {}
        self._conn: Connection | None = None
        self._sql_mode: str | None = None  # MySQL: the session's own, restored by close()

    # ------------------------------------------------------------------ plumbing

    def _where(self, entity: str | None = None) -> str:
        tables = self.table_names[entity] if entity else ", ".join(self.table_names.values())
        return f"{tables} on {self.connection.name}"

    @contextmanager
    def _errors(self, context: str) -> Iterator[None]:
        try:
            yield
        except (SQLAlchemyError, self._driver_error) as exc:
            raise translate_db_error(exc, DestinationError, context) from exc

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            with self._errors(f"cannot connect to {self.connection.name}"):
                self._conn = self.engine.connect()
                if self.dialect.name == "mysql":
                    self._sql_mode = self._set_sql_mode(self._conn, None)
        return self._conn

    @staticmethod
    def _set_sql_mode(conn: Connection, mode: str | None) -> str:
        """Set (None: add NO_BACKSLASH_ESCAPES to) the session's sql_mode; return the old one.

        PyMySQL escapes every string parameter with ``str.translate`` unless the server takes
        backslashes literally, when it only doubles quotes: 40 % off a first write of
        JSON-heavy rows. PyMySQL follows the mode the server reports, so parameters are escaped
        right either way; :meth:`close` gives the pooled connection its old mode back.
        """
        old = str(conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar_one())
        if mode is None:
            mode = ",".join(m for m in [*old.split(","), "NO_BACKSLASH_ESCAPES"] if m)
        conn.exec_driver_sql("SET SESSION sql_mode = %s", (mode,))
        conn.commit()
        return old

    @contextmanager
    def _transaction(self, context: str) -> Iterator[Connection]:
        with self._errors(context), fresh_transaction(self.conn) as conn:
            yield conn

    def close(self) -> None:
        """Give the connection back (a transaction still open is rolled back)."""
        if self._conn is not None:
            try:
                if self._conn.in_transaction():
                    self._conn.rollback()
                if self._sql_mode is not None:
                    self._set_sql_mode(self._conn, self._sql_mode)
                self._conn.close()
            except SQLAlchemyError:
                pass  # a broken connection is closed either way
            self._conn = None
            self._sql_mode = None

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def table_name(self, entity: str) -> str:
        """The qualified name of ``entity``'s table."""
        name = self.table_names[entity]
        return f"{self.schema}.{name}" if self.schema else name

    # ------------------------------------------------------------------ schema

    def prepare(self) -> None:
        """Create missing tables (with an index on the parent column); check existing ones.

        An existing table that lacks a NOT NULL column, has a column of an incompatible type, or
        has no primary key or unique index on the key is a :class:`SchemaConflictError` before
        anything is created or written. Missing nullable columns and parent indexes are added,
        and noted in :attr:`prepared`.
        """
        self.prepared = []
        self.schema_changes = []
        reviews: dict[str, Review | None] = {}
        with self._transaction(f"cannot read {self._where()}"):
            for name, entity in self.entities.items():
                found = reflect(self.conn, self.schema, self.table_names[name])
                reviews[name] = (
                    None if found is None else review(self.conn, entity, found, mark=self.mark)
                )
        problems = [
            f"target table {self.table_name(name)}: {problem}"
            for name, rev in reviews.items()
            if rev is not None
            for problem in rev.problems
        ]
        if self.policy == "freeze":  # highmark/schema/plan.py: freeze refuses every difference
            problems += [
                f"target table {self.table_name(name)}: column {want.name} is missing "
                "(schema_changes is freeze)"
                for name, rev in reviews.items()
                if rev is not None
                for want in rev.add_columns
            ]
        if problems:
            raise SchemaConflictError(
                f"{'; '.join(problems)}; nothing was written", retryable=False, conflicts=problems
            )
        for name, rev in reviews.items():
            self._tables[name] = self._make_ready(self.entities[name], rev)

    def _make_ready(self, entity: Entity, rev: Review | None) -> RecordTable:
        name = self.table_names[entity.name]
        qualified = self.table_name(entity.name)
        context = f"cannot prepare {self._where(entity.name)}"
        if rev is None:
            with self._transaction(context):
                new_table(entity, self.schema, name, self.dialect.name, mark=self.mark).create(
                    self.conn, checkfirst=True
                )
            self.prepared.append(f"created table {qualified}")
        else:
            for want in rev.add_columns:
                quoted = RecordTable.quote_table(self.dialect, self.schema, name)
                with self._transaction(context):
                    self.conn.exec_driver_sql(add_column_sql(quoted, want, self.dialect))
                self.schema_changes.append(
                    SchemaChange(entity.name, qualified, want.name, ChangeKind.ADD,
                                 new_type=column_type_text(want, self.dialect))
                )  # fmt: skip
        with self._transaction(f"cannot read {self._where(entity.name)}"):
            target = reflect(self.conn, self.schema, name)
        assert target is not None
        if rev is not None and (rev.add_parent_index or _parent_added(entity, rev)):
            self._index_parent(entity, target, context)
        return RecordTable(entity, target, self.dialect, self.zone, mark=self.mark)

    def _index_parent(self, entity: Entity, target: TableSchema, context: str) -> None:
        assert entity.parent is not None
        info = target.find(entity.parent)
        assert info is not None
        table = Table(target.name, MetaData(), Column(info.name, info.type), schema=self.schema)
        options: dict[str, Any] = {}
        if self.dialect.name == "mysql" and getattr(info.type, "length", None) is None:
            options["mysql_length"] = _MYSQL_TEXT_INDEX_PREFIX  # TEXT is indexed by a prefix
        index_name = parent_index_name(target.name, entity.parent)
        with self._transaction(context):
            Index(index_name, table.c[info.name], **options).create(self.conn)
        self.prepared.append(f"added index {index_name} on {self.table_name(entity.name)}")

    def _table(self, entity: str) -> RecordTable:
        if not self._tables:
            self.prepare()
        table = self._tables.get(entity)
        if table is None:
            raise ValueError(f"unknown entity {entity!r} (known: {', '.join(self.entities)})")
        return table

    # ------------------------------------------------------------------ writing

    def write(
        self,
        changes: Sequence[EntityChanges],
        *,
        kept: Mapping[str, list[dict[str, Any]]] | None = None,
    ) -> Counts:
        """Apply pages of changes in one target transaction; count what really changed.

        ``rows_written``: rows inserted; ``rows_updated``: stored rows that differ from the
        incoming ones in any column (a marked row upserted again counts here, its ``deleted_at``
        cleared); ``rows_deleted``: rows deleted, or newly marked. ``rows_read`` stays 0.
        Writing the same changes again changes and counts nothing. Values are checked before
        the transaction begins: a bad one is a :class:`DestinationError` with nothing written.

        ``kept``: per entity, objects of the page written apart (record_bisect.py) that a child
        set replaced here must not lose: they count as present, as if upserted with it.
        """
        kept = kept or {}
        pages = [self._checked(page, kept.get(page.entity, [])) for page in changes]
        now = clock.now()
        total = Counts()
        with self._transaction(f"cannot write {self._where()}"):
            for page in pages:
                with self._errors(f"cannot write {self._where(page.table.entity.name)}"):
                    total += self._write_page(self.conn, page, now)
        return total

    def _checked(self, page: EntityChanges, kept: list[dict[str, Any]]) -> _Page:
        """A page in canonical form (its values checked)."""
        table = self._table(page.entity)
        present = frozenset(self._incoming(table, kept)) if kept else frozenset()
        if page.replace_children_of and table.parent_index is None:
            raise ValueError(f"entity {page.entity} has no parent: no children to replace")
        rows = self._incoming(table, page.upserts)
        if page.stamp is not None and table.stamp_index is None:
            raise ValueError(f"entity {page.entity} has no stamp field")
        parents = self._canonical_keys(table, [(p,) for p in page.replace_children_of], True)
        deletes = self._canonical_keys(table, page.deletes)
        return _Page(table, rows, parents, deletes, page.stamp, present)

    def _write_page(self, conn: Connection, page: _Page, now: datetime) -> Counts:
        table, rows = page.table, page.rows
        stored: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for chunk in _chunks(list(rows)):
            params = tuple(table.key_params(chunk))
            for found in conn.exec_driver_sql(table.select_sql(len(chunk)), params):
                row = table.from_db(found)
                stored[tuple(row[i] for i in table.key_index)] = row
        version = table.version_index
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        touches: list[tuple[Any, ...]] = []  # only the stamp moves: written, not counted
        stamp = table.stamp_index
        for key, row in rows.items():
            old = stored.get(key)
            if old is None:
                inserts.append(table.db_row(row))
            elif version is not None and _newer(old[version], row[version]):
                continue
            elif not table.same(old, row):
                updates.append(table.db_row(row))
            elif stamp is not None and old[stamp] != row[stamp]:
                touches.append(table.db_row(row))
        upserts = updates + touches
        if inserts and self.dialect.name == "postgresql":
            # Rows just looked for and not found: COPY them in (the table has one writer).
            quote = self.dialect.identifier_preparer.quote
            postgres_copy.copy_rows(conn, table.quoted, table.names, inserts, quote)
        else:
            upserts = inserts + upserts
        if upserts:
            conn.exec_driver_sql(table.upsert_sql(), upserts)
        gone: list[tuple[Any, ...]] = []
        for chunk in _chunks(page.parents):
            params = tuple(table.key_params_for(table.parent_index, chunk))
            if page.stamp is not None:
                sql, params = table.stale_children_sql(len(chunk)), (page.stamp, *params)
                stale = [table.key_from_db(f) for f in conn.exec_driver_sql(sql, params)]
                gone += [key for key in stale if key not in page.kept]
                continue
            for found in conn.exec_driver_sql(table.children_sql(len(chunk)), params):
                key = table.key_from_db(found)
                if key not in rows and key not in page.kept:
                    gone.append(key)
        deleted = self._remove(conn, table, gone + page.deletes, now)
        return Counts(rows_written=len(inserts), rows_updated=len(updates), rows_deleted=deleted)

    def restamp(self, entity: str, upserts: list[dict[str, Any]]) -> None:
        """Give the stored rows of ``upserts`` (records the target refused) the stamp the
        records carry, as if written: a child set replaced by stamp later keeps their stored
        version instead of taking them for gone. Nothing for an entity without a stamp."""
        table = self._table(entity)
        stamp = table.stamp_index
        if stamp is None or not upserts:
            return
        by_stamp: dict[Any, list[tuple[Any, ...]]] = {}
        for key, row in self._incoming(table, upserts).items():
            if row[stamp] is not None:
                by_stamp.setdefault(row[stamp], []).append(key)
        with self._transaction(f"cannot write {self._where(entity)}"):
            for value, keys in by_stamp.items():
                for chunk in _chunks(keys):
                    params = (value, *table.key_params(chunk))
                    self.conn.exec_driver_sql(table.restamp_sql(len(chunk)), params)

    def _remove(
        self, conn: Connection, table: RecordTable, keys: list[tuple[Any, ...]], now: datetime
    ) -> int:
        removed = 0
        if not keys:
            return 0
        stamp = [table.deleted_at_param(now)] if self.mark else []
        for chunk in _chunks(list(dict.fromkeys(keys))):
            params = tuple(stamp + table.key_params(chunk))
            removed += conn.exec_driver_sql(table.remove_sql(len(chunk)), params).rowcount
        return removed

    def _incoming(
        self, table: RecordTable, upserts: list[dict[str, Any]]
    ) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """The page's objects as canonical rows by key; of a key given twice, the later (or the
        newer, by version) wins."""
        rows: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        version = table.version_index
        for position, obj in enumerate(upserts):
            try:
                row = table.canonical_row(obj)
            except (TypeError, ValueError, KeyError) as exc:
                raise DestinationError(
                    f"cannot write {self._where(table.entity.name)}: upsert #{position} of "
                    f"{table.entity.name}: {exc}",
                    retryable=False,
                ) from None
            key = tuple(row[i] for i in table.key_index)
            before = rows.get(key)
            if before is not None and version is not None and _newer(before[version], row[version]):
                continue
            rows[key] = row
        return rows

    def _canonical_keys(
        self, table: RecordTable, keys: Sequence[tuple[Any, ...]], parent: bool = False
    ) -> list[tuple[Any, ...]]:
        try:
            return [table.canonical_key(key, parent=parent) for key in keys]
        except (TypeError, ValueError) as exc:
            what = "parent id" if parent else "key to delete"
            raise DestinationError(
                f"cannot write {self._where(table.entity.name)}: a {what}: {exc}",
                retryable=False,
            ) from None

    # ------------------------------------------------------------------ reading

    def keys(self, entity: str, where: dict[str, Any] | None = None) -> Iterator[tuple[Any, ...]]:
        """The keys of ``entity``'s stored rows (live ones, in mark mode), in canonical form,
        optionally only those whose fields equal ``where``'s values (None: IS NULL)."""
        table = self._table(entity)
        conditions: list[tuple[str, bool]] = []
        params: list[Any] = []
        for name, value in (where or {}).items():
            if name not in table.names or name in (DELETED_AT_COLUMN, RAW_COLUMN):
                raise ValueError(f"entity {entity} has no field {name!r}")
            conditions.append((name, value is None))
            if value is not None:
                params.append(table.param(name, value))
        with self._transaction(f"cannot read {self._where(entity)}"):
            found = self.conn.exec_driver_sql(table.keys_sql(conditions), tuple(params)).all()
        return iter([table.key_from_db(row) for row in found])


@dataclass(frozen=True)
class _Page:
    """An :class:`EntityChanges` in canonical form, ready to write."""

    table: RecordTable
    rows: dict[tuple[Any, ...], tuple[Any, ...]]  # by key
    parents: list[tuple[Any, ...]]  # 1-tuples
    deletes: list[tuple[Any, ...]]
    stamp: int | None = None
    kept: frozenset[tuple[Any, ...]] = frozenset()  # keys upserted apart: present, not gone


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), KEYS_PER_STATEMENT):
        yield items[start : start + KEYS_PER_STATEMENT]


def _newer(stored: Any, incoming: Any) -> bool:
    """The stored version is newer than the incoming one (unknown versions never are)."""
    return stored is not None and incoming is not None and stored > incoming


def _parent_added(entity: Entity, rev: Review) -> bool:
    return any(w.name == entity.parent for w in rev.add_columns)
