"""Merging a staged batch into the target, set-based, inside one target transaction:

1. drop staged rows older than the target's (a stale replay never regresses a newer row);
2. delete (soft-delete ``mode: delete``), update rows that differ, insert rows that are new —
   or, without deletes, one statement: ``INSERT … ON CONFLICT DO UPDATE`` on PostgreSQL and
   SQLite (:meth:`_on_conflict`), ``INSERT … ON DUPLICATE KEY UPDATE`` on MySQL/MariaDB
   (:meth:`_upsert_mysql`).

The counts come from the statements' row counts, so replaying a batch counts nothing twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    and_,
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
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import Select, TableClause

from highmark import failpoints
from highmark.destinations.rows import RowLoader
from highmark.models import Counts, WatermarkType
from highmark.sources.base import Batch
from highmark.sqlschema import raw_table
from highmark.sqltypes import comparable

TEMP_STAGE_NAME = "highmark_stage"


class SetMerge(RowLoader):
    """Batches merged through a temporary stage; the merge SQL the full load's stage shares."""

    _only_key_unique: bool | None = None  # MySQL/MariaDB: see _key_is_the_only_unique_index

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
        """Can a staged batch be merged with one upsert statement?"""
        soft = self.job.soft_delete
        if soft is not None and soft.mode != "mark":
            return False
        if self.dialect == "mysql":
            return self._key_is_the_only_unique_index()
        return self.dialect in ("postgresql", "sqlite")

    def _key_is_the_only_unique_index(self) -> bool:
        """ON DUPLICATE KEY UPDATE acts on a duplicate in *any* unique index: a row clashing
        with another row's value in a second unique index would overwrite that row instead of
        being refused (a bad row). The upsert serves targets whose only unique index is on the
        job's key; others keep the separate update and insert. Read from the catalog rather
        than ``self.target.unique_keys``: reflection leaves out indexes on expressions, which
        clash just the same."""
        if self._only_key_unique is None:
            rows = self.conn.execute(
                text(
                    "SELECT index_name, column_name FROM information_schema.statistics "
                    "WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :name "
                    "AND non_unique = 0"
                ),
                {"schema": self.target.schema, "name": self.target.name},
            ).all()
            indexes: dict[str, set[str | None]] = {}
            for index, column in rows:
                indexes.setdefault(index, set()).add(column.lower() if column else None)
            key = {self._tcol(c).lower() for c in self.job.primary_key}
            self._only_key_unique = all(columns == key for columns in indexes.values())
        return self._only_key_unique

    def _upsert(self, s: TableClause) -> Counts:
        if self.dialect == "mysql":
            return self._upsert_mysql(s)
        if self.dialect == "sqlite":
            return self._upsert_sqlite(s)
        return self._upsert_postgresql(s)

    def _on_conflict(self, t: TableClause, s: TableClause, insert: Any) -> Any:
        """``INSERT INTO t SELECT … FROM s ON CONFLICT (key) DO UPDATE`` (PostgreSQL, SQLite:
        ``insert`` is the dialect's), driven by the staged rows, each found by the target's
        key; the version guard and the change test are the ``DO UPDATE``'s condition, so a
        row that is older or equal is left alone and not counted."""
        columns = [name for _, name in self._mapping]
        keys = [self._tcol(c) for c in self.job.primary_key]
        # (SQLite needs the WHERE: without it, ON CONFLICT would parse as the SELECT's join.)
        rows = select(*(s.c[c] for c in columns)).where(true())
        statement = insert(t).from_select(columns, rows)
        excluded = statement.excluded
        non_keys = [c for c in columns if c not in keys]
        if not non_keys:
            return statement.on_conflict_do_nothing(index_elements=keys)
        return statement.on_conflict_do_update(
            index_elements=keys,
            set_={c: excluded[c] for c in non_keys},
            where=and_(*self._not_older(t, excluded), self._differs(t.c, excluded)),
        )

    def _upsert_postgresql(self, s: TableClause) -> Counts:
        """PostgreSQL: one statement instead of joins that read the whole target (for a small
        batch into a large table, most of the merge's time). ``xmax = 0`` tells an inserted
        row from an updated one. The staged rows that mark a live row deleted are counted in
        the same statement: its parts all read one snapshot, so that count sees the target as
        it was before the upsert (and the target is planned for, and read cold, once)."""
        from sqlalchemy.dialects import postgresql

        t = self._target_clause()
        statement = self._on_conflict(t, s, postgresql.insert)
        merged = statement.returning(literal_column("xmax = 0").label("inserted")).cte("merged")
        marking = self._newly_marked_deleted_query(t, s)
        marked_count: Any = literal(0) if marking is None else marking.scalar_subquery()
        inserted, changed, marked = self.conn.execute(
            select(
                func.count().filter(merged.c.inserted),
                func.count().filter(not_(merged.c.inserted)),
                marked_count,
            )
        ).one()
        marked = int(marked)
        return Counts(
            rows_written=inserted, rows_updated=max(changed - marked, 0), rows_deleted=marked
        )

    def _upsert_sqlite(self, s: TableClause) -> Counts:
        """SQLite: one ``INSERT … ON CONFLICT DO UPDATE`` where the guard, the update and the
        insert were three statements, each looking up every staged row in the target. Its
        row count is the rows inserted plus those updated; the staged rows the target already
        has, counted first, tell the two apart."""
        from sqlalchemy.dialects import sqlite

        t = self._target_clause()
        marked = self._newly_marked_deleted_join(t, s)
        staged, present = self.conn.execute(
            select(func.count(), func.count(t.c[self._tcol(self.job.primary_key[0])]))
            .select_from(s)
            .outerjoin(t, self._pk_match(t, s))
        ).one()
        statement = self._on_conflict(t, s, sqlite.insert)
        merged = self.conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount
        inserted = staged - present
        return Counts(
            rows_written=inserted,
            rows_updated=max(merged - inserted - marked, 0),
            rows_deleted=marked,
        )

    def _upsert_mysql(self, s: TableClause) -> Counts:
        """MySQL/MariaDB: the stage into the target with one ``INSERT … SELECT … ON DUPLICATE
        KEY UPDATE``, which visits each staged row's target page once. The separate guard,
        update and insert statements visited them three times: for a batch spread over a table
        larger than the buffer pool, three reads of most of the table.

        The version guard is in every assignment (an older incoming row keeps every value),
        the watermark column assigned last because later assignments see earlier ones. The
        server's own test of whether a row changed compares the stored bytes, as the merge's
        change test does (``comparable``). The counts: with ``CLIENT_FOUND_ROWS`` (SQLAlchemy
        sets it) the statement's row count is 1 per inserted or unchanged row and 2 per changed
        one, so ``changed = count - staged``; the rows that met a duplicate key are counted by
        a session variable that the first assignment increments."""
        from pymysql.constants import CLIENT

        t = self._target_clause()
        marked = self._newly_marked_deleted_join(t, s)
        staged = int(self.conn.execute(select(func.count()).select_from(s)).scalar_one())
        q = self._quote
        target = self._quoted_target()
        columns = [name for _, name in self._mapping]
        keys = [self._tcol(c) for c in self.job.primary_key]
        spec = self.job.watermark
        guard = (
            self._tcol(spec.column)
            if spec is not None and spec.type is WatermarkType.TIMESTAMP
            else None
        )
        older = f"{target}.{q(guard)} > VALUES({q(guard)})" if guard is not None else None
        assigned = [c for c in columns if c not in keys and c != guard]
        assigned += [guard] if guard is not None else []
        if not assigned:  # key columns only: a duplicate changes nothing
            assigned = keys[:1]
            older = "TRUE"
        sets = []
        for i, c in enumerate(assigned):
            kept = f"{target}.{q(c)}"
            condition = older or "FALSE"
            if i == 0:
                condition = (
                    f"(@highmark_duplicates := @highmark_duplicates + 1) > 0 AND {condition}"
                )
            sets.append(f"{q(c)} = IF({condition}, {kept}, VALUES({q(c)}))")
        listed = ", ".join(q(c) for c in columns)
        self.conn.exec_driver_sql("SET @highmark_duplicates = 0")
        affected = self.conn.exec_driver_sql(
            f"INSERT INTO {target} ({listed}) SELECT {listed} FROM {q(s.name)} "
            f"ON DUPLICATE KEY UPDATE {', '.join(sets)}"
        ).rowcount
        duplicates = int(self.conn.exec_driver_sql("SELECT @highmark_duplicates").scalar_one())
        inserted = staged - duplicates
        raw = self.conn.connection.dbapi_connection
        if getattr(raw, "client_flag", 0) & CLIENT.FOUND_ROWS:
            changed = affected - staged
        else:  # an unchanged row counts 0
            changed = (affected - inserted) // 2
        return Counts(
            rows_written=inserted, rows_updated=max(changed - marked, 0), rows_deleted=marked
        )

    def _newly_marked_deleted_join(self, t: TableClause, s: TableClause) -> int:
        """:meth:`_newly_marked_deleted_query` for MySQL/MariaDB and SQLite, which have no LATERAL:
        a join that the database drives from the (few) staged rows marked deleted."""
        soft = self.job.soft_delete
        if soft is None:
            return 0
        deleted = self._tcol(soft.column)
        found = self.conn.execute(
            select(func.count())
            .select_from(s)
            .join(t, self._pk_match(t, s))
            .where(s.c[deleted].is_not(None), t.c[deleted].is_(None), *self._not_older(t, s.c))
        ).scalar_one()
        return int(found)

    def _not_older(self, t: TableClause, incoming: Any) -> list[ColumnElement[bool]]:
        """The version guard: a replay of an older version never overwrites a newer row."""
        spec = self.job.watermark
        if spec is None or spec.type is not WatermarkType.TIMESTAMP:
            return []
        wm = self._tcol(spec.column)
        return [t.c[wm] <= incoming[wm]]

    def _newly_marked_deleted_query(self, t: TableClause, s: TableClause) -> Select[Any] | None:
        """The count of staged rows that mark a live target row deleted (counted as deletes,
        not updates), or None without soft deletes. LATERAL … LIMIT 1 keeps the lookups on the
        target's key whatever the planner thinks."""
        soft = self.job.soft_delete
        if soft is None:
            return None
        deleted = self._tcol(soft.column)
        live = (
            select(literal(1))
            .select_from(t)
            .where(self._pk_match(t, s), t.c[deleted].is_(None), *self._not_older(t, s.c))
            .limit(1)
            .lateral()
        )
        return (
            select(func.count()).select_from(s).join(live, true()).where(s.c[deleted].is_not(None))
        )

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
