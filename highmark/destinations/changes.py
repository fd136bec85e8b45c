"""Applying change sets (highmark/sources/changes.py) to a SQL target, one transaction per set.

Upserts go through the SQL destination's stage and set-based merge (highmark/destinations/merge.py:
counts come from the statements, so a replayed set counts nothing). Deletes, soft-delete marks and
truncates are added here, inside the same target transaction, so that readers of the target never
see part of a set — part of a source transaction — unless one transaction was too large to hold.

With ``soft_delete: {column, mode: mark}`` a hard delete at the source sets the column to the
commit time of the delete (the target keeps the row); the column is added to the target if the
source has no such column. With ``mode: delete`` (or without ``soft_delete``) the row goes, and a
row the source soft-deleted (its column set) goes too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, and_, delete, exists, func, select, text, tuple_, update
from sqlalchemy.sql.expression import TableClause

from highmark import failpoints
from highmark.config import ResolvedConnection, SoftDeleteSpec, TableJobSpec, TableRef
from highmark.destinations.bisect import Written, write_bisecting
from highmark.destinations.refusal import is_data_error
from highmark.destinations.sql import SqlDestination
from highmark.destinations.target import bind
from highmark.models import Counts, RefusedRow
from highmark.schema.change import SchemaChange
from highmark.sources.base import Batch
from highmark.sources.changes import ChangeSet, Key, Op, RowChange
from highmark.sources.sql import keyset_after
from highmark.sqlschema import TableSchema, raw_table, reflect
from highmark.sqltypes import column_info, target_type, write_converter

log = logging.getLogger(__name__)

KEYS_PER_STATEMENT = 500


class ChangeDestination(SqlDestination):
    """The target table of a CDC job (or of a reconcile's repair)."""

    def __init__(self, connection: ResolvedConnection, table: TableRef, job: TableJobSpec) -> None:
        # The merges underneath are plain upserts by key: deletes and marks are done here.
        super().__init__(connection, table, job.model_copy(update={"soft_delete": None}))
        self.full_job = job
        self.soft: SoftDeleteSpec | None = job.soft_delete
        self.soft_in_source = False
        self.unreadable = 0  # rows whose unchanged TOAST values could not be completed

    # ------------------------------------------------------------------ schema

    def prepare(self, source: TableSchema, source_zone: str = "UTC") -> list[SchemaChange]:
        """Create the target or bring it up to the source (columns the source gained are added,
        nullable: highmark/schema/); return the changes, for the run to record."""
        changes = super().prepare(source, source_zone)
        soft = self.soft
        self.soft_in_source = soft is not None and source.find(soft.column) is not None
        if soft is not None and soft.mode == "mark" and self.target.find(soft.column) is None:
            self._add_column(soft.column, _timestamp_type(self.dialect))
            super().prepare(source, source_zone)
        return changes

    def managed_columns(self) -> list[str]:
        """The soft-delete column in ``mark`` mode is the target's own, not the source's."""
        return [self.soft.column] if self.soft is not None and self.soft.mode == "mark" else []

    def _add_column(self, name: str, type_: Any) -> None:
        ddl = type_.compile(dialect=self.engine.dialect)
        with self._transaction("cannot add a column to"):
            self.conn.execute(
                text(f"ALTER TABLE {self._quoted_target()} ADD COLUMN {self._quote(name)} {ddl}")
            )
        log.info("target %s: column %s %s added", self.ref.table, name, ddl)
        with self._transaction("cannot read"):
            target = reflect(self.conn, self.ref.schema_name, self.ref.table_name)
        assert target is not None
        self._target = target

    def _whole_target(self) -> TableClause:
        return raw_table(
            self.target.name, self.target.schema, [c.name for c in self.target.columns]
        )

    @property
    def _marks(self) -> bool:
        return self.soft is not None and self.soft.mode == "mark"

    # ------------------------------------------------------------------ applying changes

    def apply(self, changes: ChangeSet) -> Counts:
        """One change set in one target transaction; the counts of what really changed."""
        upserts: list[dict[str, Any]] = []
        partial: dict[Key, tuple[dict[str, Any], frozenset[str]]] = {}
        removals: list[tuple[Key, datetime]] = []
        soft_name = self.soft.column if self.soft is not None else None
        for key, change in changes.rows.items():
            row = change.row
            if change.op is Op.DELETE or row is None:
                removals.append((key, change.at))
            elif (
                self.soft is not None
                and self.soft.mode == "delete"
                and self.soft_in_source
                and _lookup(row, soft_name) is not None
            ):
                removals.append((key, change.at))  # soft-deleted at the source: it goes
            else:
                upserts.append(row)
                if change.missing:
                    partial[key] = (row, change.missing)
        stage = self._ensure_temp_stage() if upserts else None
        written = updated = removed = 0
        with self._transaction("cannot apply changes to"):
            if changes.truncated_at is not None:
                removed += self._truncate(changes.truncated_at)
            if partial:
                self._complete(partial)
            removed += self._remove(removals)
            if stage is not None:
                self._clear(stage)
                self._load(stage, Batch(rows=upserts))
                merged = (
                    self._upsert(stage)
                    if self._upserts()
                    else self._merge(stage, delete_missing=False)
                )
                written, updated = merged.rows_written, merged.rows_updated
                if self._marks and not self.soft_in_source:
                    written += self._unmark(stage)
                self._clear(stage)
            failpoints.reach("mid_batch")
        return Counts(rows_written=written, rows_updated=updated, rows_deleted=removed)

    def apply_bisecting(
        self, changes: ChangeSet, check: Callable[[], None] = lambda: None
    ) -> Written:
        """:meth:`apply`; a set the target refuses for a data reason is bisected
        (highmark/destinations/bisect.py) down to the changes at fault, and the others applied.

        A set holds one change per key, its net effect in log order, so every piece keeps each
        key's changes together and in order. Removals come first, as in one :meth:`apply`; a
        truncate is applied alone before the first piece. A refused change is reported by its
        row (a delete: by its key), as the job loads it (masked, chosen columns only)."""
        if not changes.rows:  # nothing to bisect: at most a truncate
            return Written(self.apply(changes), [])
        items: list[tuple[dict[str, Any], Key, RowChange]] = []
        for key, change in sorted(changes.rows.items(), key=lambda kc: kc[1].op is Op.UPSERT):
            row = change.row
            if row is None:
                row = dict(zip(self.job.primary_key, key, strict=True))
            items.append((row, key, change))
        by_row = {id(row): (key, change) for row, key, change in items}
        truncate = changes.truncated_at

        def write(batch: Batch) -> Counts:
            nonlocal truncate
            if len(batch.rows) == len(items):  # the whole set, in one transaction
                return self.apply(changes)
            done = Counts()
            if truncate is not None:
                done = self.apply(ChangeSet(truncated_at=truncate))
                truncate = None
            part = ChangeSet(rows=dict(by_row[id(row)] for row in batch.rows))
            return done + self.apply(part)

        return write_bisecting(write, Batch(rows=[row for row, _, _ in items]), check=check)

    def _truncate(self, at: datetime) -> int:
        t = self._whole_target()
        if self._marks:
            return self._mark(t, None, at)
        count = int(self.conn.execute(select(func.count()).select_from(t)).scalar_one())
        if self.dialect == "postgresql":
            self.conn.execute(text(f"TRUNCATE {self._quoted_target()}"))
        else:  # MySQL's TRUNCATE commits by itself; DELETE stays inside the transaction
            self.conn.execute(delete(t))
        return count

    def _remove(self, removals: list[tuple[Key, datetime]]) -> int:
        if not removals:
            return 0
        t = self._whole_target()
        done = 0
        if self._marks:
            # Each set of keys is marked with its own commit time (most sets share one).
            by_time: dict[datetime, list[Key]] = {}
            for key, at in removals:
                by_time.setdefault(at, []).append(key)
            for at, keys in by_time.items():
                for start in range(0, len(keys), KEYS_PER_STATEMENT):
                    done += self._mark(t, keys[start : start + KEYS_PER_STATEMENT], at)
            return done
        keys = [key for key, _ in removals]
        for start in range(0, len(keys), KEYS_PER_STATEMENT):
            chunk = keys[start : start + KEYS_PER_STATEMENT]
            done += int(self.conn.execute(delete(t).where(self._key_in(t, chunk))).rowcount)
        return done

    def _mark(self, t: TableClause, keys: list[Key] | None, at: datetime, where: Any = None) -> int:
        assert self.soft is not None
        column = self._tcol(self.soft.column)
        info = self.target.find(column)
        assert info is not None
        convert = write_converter(info, self.dialect, self.zone)
        value = convert(at) if convert is not None else at
        statement = update(t).where(t.c[column].is_(None))
        if keys is not None:
            statement = statement.where(self._key_in(t, keys))
        if where is not None:
            statement = statement.where(where)
        return int(self.conn.execute(statement.values({column: bind(value)})).rowcount)

    def _unmark(self, stage: TableClause) -> int:
        """Rows the source has again (inserted after a delete): no longer marked deleted."""
        assert self.soft is not None
        t = self._whole_target()
        column = self._tcol(self.soft.column)
        keys = [self._tcol(c) for c in self.job.primary_key]
        match = and_(*(stage.c[k] == t.c[k] for k in keys))
        statement = (
            update(t).where(t.c[column].is_not(None), exists().where(match)).values({column: None})
        )
        return int(self.conn.execute(statement).rowcount)

    def _key_in(self, t: TableClause, keys: list[Key]) -> Any:
        columns = [t.c[self._tcol(c)] for c in self.job.primary_key]
        values = [tuple(self._key_values(key)) for key in keys]
        if len(columns) == 1:
            return columns[0].in_([bind(v[0]) for v in values])
        return tuple_(*columns).in_([tuple_(*(bind(x) for x in v)) for v in values])

    def _complete(self, partial: dict[Key, tuple[dict[str, Any], frozenset[str]]]) -> None:
        """Fill the columns an update did not carry (unchanged TOAST) from the target's row."""
        t = self._whole_target()
        names = sorted({name for _, missing in partial.values() for name in missing})
        key_names = [self._tcol(c) for c in self.job.primary_key]
        columns = [*key_names, *(self._tcol(n) for n in names)]
        readers = [self._reader(n) for n in columns]
        keys = list(partial)
        for start in range(0, len(keys), KEYS_PER_STATEMENT):
            chunk = keys[start : start + KEYS_PER_STATEMENT]
            query = select(*(t.c[n] for n in columns)).where(self._key_in(t, chunk))
            found: dict[Key, dict[str, Any]] = {}
            for raw in self.conn.execute(query):
                values = [read(v) for read, v in zip(readers, raw, strict=True)]
                found[tuple(values[: len(key_names)])] = dict(
                    zip(names, values[len(key_names) :], strict=True)
                )
            for key in chunk:
                row, missing = partial[key]
                current = found.get(tuple(key))
                if current is None:
                    self.unreadable += 1
                    continue
                for name in missing:
                    row[name] = current.get(name)

    def _reader(self, name: str) -> Any:
        from highmark.sqltypes import read_converter

        info = self.target.find(name)
        assert info is not None
        convert = read_converter(info, self.zone)
        return (lambda v: v) if convert is None else (lambda v: None if v is None else convert(v))

    # ------------------------------------------------------------------ snapshots

    def snapshot_finish(self, at: datetime, check: Callable[[], None] = lambda: None) -> Written:
        """End a snapshot staged with :meth:`stage_begin`/:meth:`stage_batch`: the target ends
        equal to it; rows it lacks are removed (or marked deleted at ``at``). A merge the target
        refuses for some rows' values is done again in pieces, bisected: those rows are
        returned, the others merged."""
        stage = self._full_stage()
        try:
            with self._transaction("cannot write"):
                gone = self._gone(stage, at)
                counts = self._merge(stage, delete_missing=False)
                if self._marks and not self.soft_in_source:
                    counts = counts + Counts(rows_written=self._unmark(stage))
            written = Written(counts + Counts(rows_deleted=gone), [])
        except Exception as exc:
            if not is_data_error(exc):
                raise
            log.info("target %s refused the snapshot's merge: merging it in pieces", self.ref.table)
            written = self._merge_in_pieces(stage, at, check)
        with self._transaction("cannot drop the staging table of"):
            name = self._quote_qualified(self.ref.schema_name, self.full_stage_name)
            self.conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        return written

    def _gone(self, stage: TableClause, at: datetime) -> int:
        """Remove (or mark deleted at ``at``) the target's rows that ``stage`` lacks."""
        t = self._whole_target()
        keys = [self._tcol(c) for c in self.job.primary_key]
        missing = ~exists().where(and_(*(stage.c[k] == t.c[k] for k in keys)))
        if not self._marks:
            return int(self.conn.execute(delete(t).where(missing)).rowcount)
        return self._mark(t, None, at, missing)

    def _merge_in_pieces(
        self, stage: TableClause, at: datetime, check: Callable[[], None]
    ) -> Written:
        """The snapshot's merge as change sets of ``batch_size`` staged rows, in key order, each
        applied (and bisected) as the log's changes are: bounded memory, the refused rows named."""
        with self._transaction("cannot write"):
            counts = Counts(rows_deleted=self._gone(stage, at))
        names = [target for _, target in self._mapping]
        readers = [(source, self._reader(target)) for source, target in self._mapping]
        keys = [stage.c[self._tcol(c)] for c in self.job.primary_key]
        at_key = [names.index(k.name) for k in keys]
        refused: list[RefusedRow] = []
        after: list[Any] | None = None
        while True:
            check()
            query = select(*(stage.c[n] for n in names)).order_by(*keys).limit(self.job.batch_size)
            if after is not None:
                query = query.where(keyset_after(keys, after))
            with self._transaction("cannot read"):
                raw = self.conn.execute(query).all()
            if not raw:
                return Written(counts, refused)
            after = [raw[-1][i] for i in at_key]
            piece = ChangeSet()
            for values in raw:
                row = {name: read(v) for (name, read), v in zip(readers, values, strict=True)}
                piece.rows[tuple(values[i] for i in at_key)] = RowChange(Op.UPSERT, row, at)
            written = self.apply_bisecting(piece, check)
            counts, refused = counts + written.counts, [*refused, *written.refused]


def _timestamp_type(dialect: str) -> Any:
    info = column_info("deleted_at", DateTime(timezone=True), True, "postgresql")
    return target_type(info, dialect, in_key=False)


def _lookup(row: dict[str, Any], name: str | None) -> Any:
    if name is None:
        return None
    if name in row:
        return row[name]
    lowered = name.lower()
    return next((v for k, v in row.items() if k.lower() == lowered), None)
