"""Putting a batch's rows into a table of the target (a stage, or the target itself): driver
tuples, PostgreSQL COPY, or a key range a fast path (highmark/destinations/ranges.py) pulls."""

from __future__ import annotations

from typing import Any

from sqlalchemy.sql.expression import TableClause

from highmark.destinations import postgres_copy, ranges
from highmark.destinations.target import TargetTable
from highmark.sources.base import Batch
from highmark.sources.sql import SqlSource


class RowLoader(TargetTable):
    """The fastest way a batch goes into a table of the target."""

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
