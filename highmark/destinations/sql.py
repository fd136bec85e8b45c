"""SQL tables as a target, on SQLite, PostgreSQL and MySQL/MariaDB.

Every write goes through a staging table and one set-based merge in a single target transaction:

1. stage the rows (a temporary table for incremental batches; a real table for full loads, so that
   a killed full load resumes where it stopped);
2. drop staged rows older than the target's (a stale replay never regresses a newer row);
3. delete (soft-delete ``mode: delete``), update rows that differ, insert rows that are new.

The counts come from the statements' row counts, so replaying a batch counts nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.types import NullType

from highmark import failpoints
from highmark.config import ResolvedConnection, TableJobSpec, TableRef
from highmark.db import get_engine
from highmark.destinations import postgres_copy, ranges
from highmark.errors import DestinationError, translate_db_error
from highmark.models import Counts, Watermark, WatermarkType
from highmark.schema import ddl
from highmark.schema.change import SchemaChange
from highmark.schema.plan import adapted, plan_changes
from highmark.sources.base import Batch
from highmark.sources.sql import SqlSource, keyset_after
from highmark.sqlschema import TableSchema, raw_table, reflect
from highmark.sqltypes import (
    Converter,
    comparable,
    write_converter,
)

TEMP_STAGE_NAME = "highmark_stage"
FULL_STAGE_PREFIX = "hm_stage_"


class SqlDestination:
    """The target table of one job."""

    def __init__(self, connection: ResolvedConnection, table: TableRef, job: TableJobSpec) -> None:
        self.connection = connection
        self.ref = table
        self.job = job
        self.zone = ZoneInfo(connection.timezone)
        self.engine = get_engine(connection.url, "target")
        self.dialect = self.engine.dialect.name
        self._conn: Connection | None = None
        self._target: TableSchema | None = None
        self._mapping: list[tuple[str, str]] = []  # (source column, target column)
        self._converters: list[Converter | None] = []
        self._temp_ready = False
        self._source: TableSchema | None = None
        self._source_zone = "UTC"
        self._copy_plan: tuple[list[str], bool] | None = None
        self._ranges: ranges.RangeLoader | None = None  # a fast path of destinations/ranges.py

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _errors(self, context: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            where = f"target {self.ref.table} on {self.connection.name}"
            raise translate_db_error(exc, DestinationError, f"{context} {where}") from exc

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            with self._errors("cannot connect to"):
                self._conn = self.engine.connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                if self._conn.in_transaction():
                    self._conn.rollback()
                self._conn.close()
            except SQLAlchemyError:
                pass  # a broken connection is closed either way
            self._conn = None

    @contextmanager
    def _transaction(self, context: str) -> Iterator[Connection]:
        conn = self.conn
        with self._errors(context):
            if conn.in_transaction():
                conn.commit()
            try:
                with conn.begin():
                    yield conn
            except SQLAlchemyError:
                self._temp_ready = self._temp_ready and self.dialect != "sqlite"
                raise

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

    # ------------------------------------------------------------------ helpers

    @property
    def target(self) -> TableSchema:
        assert self._target is not None, "prepare() first"
        return self._target

    def _tcol(self, source_name: str) -> str:
        col = self.target.find(source_name)
        assert col is not None
        return col.name

    def _tuples(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Rows as the target driver takes them, in the order of ``self._mapping``."""
        plan = [
            (src, convert)
            for (src, _), convert in zip(self._mapping, self._converters, strict=True)
        ]
        return [
            tuple(
                convert(row[src]) if convert is not None and row[src] is not None else row[src]
                for src, convert in plan
            )
            for row in rows
        ]

    def _target_clause(self) -> TableClause:
        return raw_table(self.target.name, self.target.schema, [t for _, t in self._mapping])

    def takes_copy_from(self, source_dialect: str) -> bool:
        """Can a batch come as a COPY range (PostgreSQL to PostgreSQL)?"""
        return self.dialect == "postgresql" and source_dialect == "postgresql"

    def takes_ranges_from(self, source: SqlSource) -> bool:
        """Can a batch come as a key range that the target pulls itself: COPY, or a fast path
        of highmark/destinations/ranges.py (prepare() first)?"""
        if self.takes_copy_from(source.describe().dialect):
            return True
        assert self._source is not None, "prepare() first"
        plan = ranges.TargetPlan(
            self._source, self._source_zone, self._mapping, self.target,
            self.connection.timezone, self._converters, self._quote,
        )  # fmt: skip
        self._ranges = ranges.range_loader(self.conn, self.connection, source, self.job, plan)
        return self._ranges is not None

    @property
    def loads_ranges_in_parallel(self) -> bool:
        return self._ranges is None or self._ranges.parallel

    def _plan_copy(self) -> tuple[list[str], bool]:
        """How each source column is COPYed into the target (read once, from the target)."""
        if self._copy_plan is None:
            assert self._source is not None, "prepare() first"
            types = postgres_copy.target_columns(self.conn, self._quoted_target())
            self._copy_plan = postgres_copy.select_list(
                self._source, self._source_zone, self._mapping,
                self.target, self.connection.timezone, types, self._quote,
            )  # fmt: skip
        return self._copy_plan

    def _load(self, table: TableClause, batch: Batch) -> int:
        """Put a batch's rows into ``table`` (a stage or the target) the fastest way there is;
        return how many."""
        quoted = self._quote_qualified(table.schema, table.name)
        columns = [t for _, t in self._mapping]
        if batch.copy is not None and self._ranges is not None:
            return self._ranges.load(self.conn, quoted, columns, batch.copy)
        if batch.copy is not None:
            expressions, binary = self._plan_copy()
            return postgres_copy.copy_range(
                self.conn,
                quoted,
                columns,
                batch.copy,
                expressions,
                binary=binary,
                quote=self._quote,
            )
        rows = self._tuples(batch.rows)
        if self.dialect == "postgresql":
            return postgres_copy.copy_rows(self.conn, quoted, columns, rows, self._quote)
        # Straight to the driver's executemany (sqlite3 runs it in C; PyMySQL sends multi-row
        # INSERTs): SQLAlchemy's per-row parameter handling would cost more than the insert.
        marker = "?" if self.dialect == "sqlite" else "%s"
        names = ", ".join(self._quote(c) for c in columns)
        statement = f"INSERT INTO {quoted} ({names}) VALUES ({', '.join([marker] * len(columns))})"
        if marker == "%s":
            head, _, tail = statement.partition(" VALUES ")
            statement = f"{head.replace('%', '%%')} VALUES {tail}"
        if rows:
            self.conn.exec_driver_sql(statement, rows)
        return len(rows)

    def _differs(self, t: Any, s: Any) -> ColumnElement[bool]:
        """Some non-key column differs between the rows of the column collections ``t``, ``s``."""
        keys = {self._tcol(c).lower() for c in self.job.primary_key}
        clauses = []
        for _, name in self._mapping:
            if name.lower() in keys:
                continue
            info = self.target.find(name)
            assert info is not None
            clauses.append(
                comparable(t[name], info, self.dialect).is_distinct_from(
                    comparable(s[name], info, self.dialect)
                )
            )
        return or_(*clauses)

    def _pk_match(self, a: TableClause, b: TableClause) -> ColumnElement[bool]:
        return and_(*(a.c[self._tcol(c)] == b.c[self._tcol(c)] for c in self.job.primary_key))

    # ------------------------------------------------------------------ incremental

    def _ensure_temp_stage(self) -> TableClause:
        stage = raw_table(TEMP_STAGE_NAME, None, [t for _, t in self._mapping])
        if not self._temp_ready:
            ddl = self._empty_copy_sql(TEMP_STAGE_NAME, temporary=True)
            with self._transaction("cannot create a staging table for"):
                self.conn.execute(text(f"DROP TABLE IF EXISTS {TEMP_STAGE_NAME}"))
                self.conn.execute(text(ddl))
            self._temp_ready = True
        return stage

    def merge_batch(self, batch: Batch) -> Counts:
        stage = self._ensure_temp_stage()
        with self._transaction("cannot write"):
            self._clear(stage)
            read = self._load(stage, batch)
            if self._upserts():
                counts = self._upsert(stage)
            else:
                if self.dialect == "postgresql":
                    # Autovacuum never analyzes temporary tables. With statistics the planner
                    # knows how few staged rows are soft-deleted, and deletes them by the
                    # target's key instead of reading the whole target.
                    self.conn.execute(text(f"ANALYZE {self._quote(stage.name)}"))
                counts = self._merge(stage, delete_missing=False)
            self._clear(stage)
            failpoints.reach("mid_batch")
        return counts.with_read(read)

    def _upserts(self) -> bool:
        """Can a staged batch be merged with one ``INSERT … ON CONFLICT DO UPDATE``?"""
        soft = self.job.soft_delete
        return self.dialect == "postgresql" and (soft is None or soft.mode == "mark")

    def _upsert(self, s: TableClause) -> Counts:
        """PostgreSQL: the stage into the target with one statement driven by the staged rows,
        each found by the target's key, instead of joins that read the whole target (for a
        small batch into a large table, most of the merge's time). ``xmax = 0`` tells an
        inserted row from an updated one; the version guard and the change test are the
        ``DO UPDATE``'s condition."""
        from sqlalchemy.dialects import postgresql

        t = self._target_clause()
        marked = self._newly_marked_deleted(t, s)
        columns = [name for _, name in self._mapping]
        keys = [self._tcol(c) for c in self.job.primary_key]
        statement = postgresql.insert(t).from_select(columns, select(*(s.c[c] for c in columns)))
        excluded = statement.excluded
        non_keys = [c for c in columns if c not in keys]
        if non_keys:
            statement = statement.on_conflict_do_update(
                index_elements=keys,
                set_={c: excluded[c] for c in non_keys},
                where=and_(*self._not_older(t, excluded), self._differs(t.c, excluded)),
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=keys)
        merged = statement.returning(literal_column("xmax = 0").label("inserted")).cte("merged")
        inserted, changed = self.conn.execute(
            select(
                func.count().filter(merged.c.inserted),
                func.count().filter(not_(merged.c.inserted)),
            )
        ).one()
        return Counts(
            rows_written=inserted, rows_updated=max(changed - marked, 0), rows_deleted=marked
        )

    def _not_older(self, t: TableClause, incoming: Any) -> list[ColumnElement[bool]]:
        """The version guard: a replay of an older version never overwrites a newer row."""
        spec = self.job.watermark
        if spec is None or spec.type is not WatermarkType.TIMESTAMP:
            return []
        wm = self._tcol(spec.column)
        return [t.c[wm] <= incoming[wm]]

    def _newly_marked_deleted(self, t: TableClause, s: TableClause) -> int:
        """Staged rows that mark a live target row deleted (counted as deletes, not updates).
        LATERAL … LIMIT 1 keeps the lookups on the target's key whatever the planner thinks."""
        soft = self.job.soft_delete
        if soft is None:
            return 0
        deleted = self._tcol(soft.column)
        live = (
            select(literal(1))
            .select_from(t)
            .where(self._pk_match(t, s), t.c[deleted].is_(None), *self._not_older(t, s.c))
            .limit(1)
            .lateral()
        )
        found = self.conn.execute(
            select(func.count()).select_from(s).join(live, true()).where(s.c[deleted].is_not(None))
        ).scalar_one()
        return int(found)

    # ------------------------------------------------------------------ first loads

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
        value = _bind(convert(raw) if convert is not None else raw)
        if spec.tiebreaker and position.id is not None and not inclusive:
            tb = t.c[self._tcol(spec.tiebreaker)]
            return or_(wm > value, and_(wm == value, tb > _bind(position.id)))
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

    def _clear(self, stage: TableClause) -> None:
        if self.dialect == "postgresql":
            self.conn.execute(text(f"TRUNCATE {self._quote(stage.name)}"))
        else:
            self.conn.execute(delete(stage))

    def _merge(self, stage: TableClause, *, delete_missing: bool) -> Counts:
        """Merge ``stage`` into the target inside the current transaction; return the counts."""
        t = self._target_clause()
        s = stage
        removed = 0
        if delete_missing:
            removed += self.conn.execute(
                delete(t).where(~exists().where(self._pk_match(s, t)))
            ).rowcount
        spec = self.job.watermark
        if spec is not None and spec.type is WatermarkType.TIMESTAMP and not delete_missing:
            wm = self._tcol(spec.column)
            # Version guard: a replay of an older version never overwrites a newer one.
            self.conn.execute(
                delete(s).where(exists().where(and_(self._pk_match(t, s), t.c[wm] > s.c[wm])))
            )
        marked = 0
        soft = self.job.soft_delete
        if soft is not None:
            deleted_col = self._tcol(soft.column)
            if soft.mode == "delete":
                removed += self.conn.execute(
                    delete(t).where(
                        exists().where(self._pk_match(s, t), s.c[deleted_col].is_not(None))
                    )
                ).rowcount
                self.conn.execute(delete(s).where(s.c[deleted_col].is_not(None)))
            else:
                marked = self.conn.execute(
                    select(func.count())
                    .select_from(t)
                    .join(s, self._pk_match(t, s))
                    .where(t.c[deleted_col].is_(None), s.c[deleted_col].is_not(None))
                ).scalar_one()
        keys = {self._tcol(c).lower() for c in self.job.primary_key}
        assignments = {name: s.c[name] for _, name in self._mapping if name.lower() not in keys}
        changed = 0
        if assignments:
            changed = self.conn.execute(
                update(t).where(self._pk_match(t, s), self._differs(t.c, s.c)).values(assignments)
            ).rowcount
        columns = [name for _, name in self._mapping]
        inserted = self.conn.execute(
            insert(t)
            .from_select(
                columns,
                select(*(s.c[c] for c in columns)).where(~exists().where(self._pk_match(t, s))),
            )
            # SQLAlchemy keeps an INSERT's row count only when asked to.
            .execution_options(preserve_rowcount=True)
        ).rowcount
        return Counts(
            rows_written=max(inserted, 0),
            rows_updated=max(changed - marked, 0),
            rows_deleted=removed + marked,
        )

    # ------------------------------------------------------------------ full loads

    @property
    def full_stage_name(self) -> str:
        # A name of its own per job, kept short for MySQL's 64-character limit.
        return (FULL_STAGE_PREFIX + self.job.job_id.replace(".", "_").replace("-", "_"))[:60]

    def _full_stage(self) -> TableClause:
        return raw_table(self.full_stage_name, self.ref.schema_name, [t for _, t in self._mapping])

    def stage_begin(self, resume_after: tuple[Any, ...] | None) -> bool:
        """Start staging; True when an earlier, interrupted staging continues after
        ``resume_after``. Without its staging table (it was merged and dropped, or never made),
        a full load starts over: merging a partial stage would delete the rest of the target."""
        stage = self._full_stage()
        with self._transaction("cannot read"):
            exists_now = reflect(self.conn, self.ref.schema_name, self.full_stage_name) is not None
        if resume_after is not None and exists_now:
            keys = [stage.c[self._tcol(c)] for c in self.job.primary_key]
            with self._transaction("cannot resume the staging table of"):
                # Rows staged after the last checkpoint are read again.
                self.conn.execute(
                    delete(stage).where(keyset_after(keys, list(self._key_values(resume_after))))
                )
            return True
        quoted = self._quote_qualified(self.ref.schema_name, self.full_stage_name)
        pk_cols = ", ".join(self._quote(self._tcol(c)) for c in self.job.primary_key)
        index_name = self._quote(f"{self.full_stage_name}_pk"[:64])
        with self._transaction("cannot create the staging table of"):
            self.conn.execute(text(f"DROP TABLE IF EXISTS {quoted}"))
        with self._transaction("cannot create the staging table of"):
            self.conn.execute(text(self._empty_copy_sql(quoted, temporary=False)))
        with self._transaction("cannot create the staging table of"):
            on = quoted if self.dialect != "sqlite" else self._quote(self.full_stage_name)
            if self.dialect == "sqlite" and self.ref.schema_name:
                index_name = f"{self._quote(self.ref.schema_name)}.{index_name}"
            self.conn.execute(text(f"CREATE UNIQUE INDEX {index_name} ON {on} ({pk_cols})"))
        return False

    def _key_values(self, key: tuple[Any, ...]) -> list[Any]:
        values = []
        for name, value in zip(self.job.primary_key, key, strict=True):
            tcol = self.target.find(name)
            assert tcol is not None
            convert = write_converter(tcol, self.dialect, self.zone)
            values.append(convert(value) if convert is not None and value is not None else value)
        return values

    def stage_batch(self, batch: Batch) -> int:
        with self._transaction("cannot stage rows for"):
            staged = self._load(self._full_stage(), batch)
            failpoints.reach("mid_batch")
        return staged

    def stage_finish(self) -> Counts:
        stage = self._full_stage()
        with self._transaction("cannot write"):
            counts = self._merge(stage, delete_missing=True)
        with self._transaction("cannot drop the staging table of"):
            stage_name = self._quote_qualified(self.ref.schema_name, self.full_stage_name)
            self.conn.execute(text(f"DROP TABLE IF EXISTS {stage_name}"))
        return counts

    # ------------------------------------------------------------------ quoting

    def _empty_copy_sql(self, quoted_name: str, *, temporary: bool) -> str:
        """CREATE TABLE … AS an empty copy of the target's mapped columns, with their types."""
        columns = ", ".join(self._quote(t) for _, t in self._mapping)
        kind = "TEMPORARY TABLE" if temporary else "TABLE"
        query = f"SELECT {columns} FROM {self._quoted_target()}"
        if self.dialect == "postgresql":
            return f"CREATE {kind} {quoted_name} AS {query} WITH NO DATA"
        return f"CREATE {kind} {quoted_name} AS {query} WHERE 1 = 0"

    def _quote(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def _quote_qualified(self, schema: str | None, name: str) -> str:
        return f"{self._quote(schema)}.{self._quote(name)}" if schema else self._quote(name)

    def _quoted_target(self) -> str:
        return self._quote_qualified(self.target.schema, self.target.name)


def _bind(value: Any) -> Any:
    return bindparam(None, value, type_=NullType())
