"""SQL tables as a target, on SQLite, PostgreSQL and MySQL/MariaDB.

Every write goes through a staging table and one set-based merge in a single target transaction:

1. stage the rows (a temporary table for incremental batches; a real table for full loads, so that
   a killed full load resumes where it stopped);
2. drop staged rows older than the target's (a stale replay never regresses a newer row);
3. delete (soft-delete ``mode: delete``), update rows that differ, insert rows that are new.

The counts come from the statements' row counts, so replaying a batch counts nothing twice.

The parts, one module each: target.py (connection, transactions, names), rows.py (rows and key
ranges into a table), merge.py (the set-based merge, through a temporary stage), stage.py (the
full load's staging table). This module keeps the class's life: creating or evolving the target,
the direct writes of a first load, and clones for parallel writers.
"""

from __future__ import annotations

from sqlalchemy import and_, delete, literal, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import TableClause

from highmark import failpoints
from highmark.destinations.merge import TEMP_STAGE_NAME
from highmark.destinations.stage import FULL_STAGE_PREFIX, FullStage
from highmark.destinations.target import bind
from highmark.models import Counts, Watermark, WatermarkType
from highmark.schema import ddl
from highmark.schema.change import SchemaChange
from highmark.schema.plan import adapted, plan_changes
from highmark.sources.base import Batch
from highmark.sqlschema import TableSchema, reflect
from highmark.sqltypes import write_converter

__all__ = ["FULL_STAGE_PREFIX", "TEMP_STAGE_NAME", "SqlDestination"]


class SqlDestination(FullStage):
    """The target table of one job."""

    # ------------------------------------------------------------------ schema

    def prepare(self, source: TableSchema, source_zone: str = "UTC") -> list[SchemaChange]:
        """Create the target, or bring it up to ``source`` under the job's ``schema_changes``
        (highmark/schema/plan.py: a refusal is raised before anything is written); return the
        changes applied or found."""
        self._source = source
        self._source_zone = source_zone
        with self._transaction("cannot read"):
            target = reflect(self.conn, self.ref.schema_name, self.ref.table_name)
        changes: list[SchemaChange] = []
        if target is None:
            target = self._create(source)
        else:
            target, changes = self._evolve(source, target)
        target = adapted(source, target)
        self._target = target
        self._mapping = []
        self._converters = []
        for col in source.columns:
            tcol = target.find(col.name)
            assert tcol is not None
            self._mapping.append((col.name, tcol.name))
            self._converters.append(write_converter(tcol, self.dialect, self.zone))
        return changes

    def _evolve(
        self, source: TableSchema, target: TableSchema
    ) -> tuple[TableSchema, list[SchemaChange]]:
        plan = plan_changes(
            source, target,
            source_table=self.job.source.table, target_table=self.ref.table,
            primary_key=self.job.primary_key, policy=self.job.schema_changes,
            managed=self.managed_columns(), target_zone=self.connection.timezone,
        )  # fmt: skip
        plan.refuse()
        if plan.alterations:
            self._temp_ready = False
            self._copy_plan = None
            with self._transaction("cannot alter"):
                ddl.apply(self.conn, self._quote_qualified(target.schema, target.name),
                          plan.alterations)  # fmt: skip
            with self._transaction("cannot read"):
                altered = reflect(self.conn, self.ref.schema_name, self.ref.table_name)
            assert altered is not None
            target = altered
        return target, plan.changes

    def managed_columns(self) -> list[str]:
        """Target columns highmark fills itself, that the source never has (none here)."""
        return []

    def _create(self, source: TableSchema) -> TableSchema:
        with self._transaction("cannot create"):
            ddl.create_table(
                self.conn, self.ref.schema_name, self.ref.table_name, source, self.job.primary_key
            )
        with self._transaction("cannot read"):
            created = reflect(self.conn, self.ref.schema_name, self.ref.table_name)
        assert created is not None
        return created

    # ------------------------------------------------------------------ direct writes

    def is_empty(self) -> bool:
        with self._transaction("cannot read"):
            return (
                self.conn.execute(
                    select(literal(1)).select_from(self._target_clause()).limit(1)
                ).first()
                is None
            )

    def write_direct(self, batch: Batch) -> Counts:
        """A first load into an empty target: rows go straight in, no stage, nothing to merge.
        (A resumed first load first removes what the interrupted run wrote after its last
        checkpoint: :meth:`delete_after`.)"""
        with self._transaction("cannot write"):
            written = self._load(self._target_clause(), batch)
            failpoints.reach("mid_batch")
        return Counts(rows_read=written, rows_written=written)

    def delete_after(self, position: Watermark | None, *, inclusive: bool) -> int:
        """Remove target rows past ``position`` in key order (or all rows when None)."""
        return self.delete_range(position, None, inclusive=inclusive)

    def delete_range(
        self, after: Watermark | None, upto: Watermark | None, *, inclusive: bool = False
    ) -> int:
        """Remove target rows with keys in ``(after, upto]`` (``[after, upto]`` when inclusive;
        no bound where None)."""
        t = self._target_clause()
        conditions: list[ColumnElement[bool]] = []
        if after is not None:
            conditions.append(self._past(t, after, inclusive=inclusive))
        if upto is not None:
            conditions.append(~self._past(t, upto, inclusive=False))
        with self._transaction("cannot clean up"):
            statement = delete(t).where(*conditions) if conditions else delete(t)
            return int(self.conn.execute(statement).rowcount)

    def _past(self, t: TableClause, position: Watermark, *, inclusive: bool) -> ColumnElement[bool]:
        """Target rows after ``position`` in key order (at or after it when inclusive)."""
        spec = self.job.watermark
        assert spec is not None
        wm = t.c[self._tcol(spec.column)]
        info = self.target.find(spec.column)
        assert info is not None
        convert = write_converter(info, self.dialect, self.zone)
        raw = position.id if spec.type is WatermarkType.INTEGER else position.ts
        value = bind(convert(raw) if convert is not None else raw)
        if spec.tiebreaker and position.id is not None and not inclusive:
            tb = t.c[self._tcol(spec.tiebreaker)]
            return or_(wm > value, and_(wm == value, tb > bind(position.id)))
        past: ColumnElement[bool] = wm >= value if inclusive else wm > value
        return past

    def clone(self) -> SqlDestination:
        """The same prepared target on a connection of its own (one per parallel writer)."""
        other = SqlDestination(self.connection, self.ref, self.job)
        if self._source is not None and self.takes_copy_from(self._source.dialect):
            self._plan_copy()
        for name in (
            "_target",
            "_mapping",
            "_converters",
            "_source",
            "_source_zone",
            "_copy_plan",
            "_ranges",
        ):
            setattr(other, name, getattr(self, name))
        return other
