"""SQL tables as a source: keyset reads by (timestamp, tiebreaker) or integer id, full reads by
primary key, soft deletes; on SQLite, PostgreSQL and MySQL/MariaDB.

Each read is one ordered query streamed in batches (one snapshot, one sort), started only after the
upper bound was computed on a separate connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, bindparam, func, or_, select, true
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from highmark.config import ResolvedConnection, TableJobSpec, TableRef
from highmark.db import get_engine
from highmark.errors import SourceError, translate_db_error
from highmark.models import Watermark, WatermarkType
from highmark.schema import selection
from highmark.sources.base import Anomalies, Batch, Bound
from highmark.sources.conversion import CONVERSION_ERRORS, convert_row
from highmark.sources.sqlite_text import SqliteTextTimestamps
from highmark.sqlschema import TableSchema, reflect
from highmark.sqltypes import ColumnInfo, Converter, Family, TimestampKind, read_converter
from highmark.window import inclusive_high, timestamp_cap


class SqlSource:
    """One source table of one job."""

    def __init__(self, connection: ResolvedConnection, table: TableRef, job: TableJobSpec) -> None:
        self.connection = connection
        self.ref = table
        self.job = job
        self.zone = ZoneInfo(connection.timezone)
        self.engine = get_engine(connection.url, "source")
        self._schema: TableSchema | None = None
        self._sqlite_text: SqliteTextTimestamps | None = None
        self._maskers: dict[str, Converter] = {}  # masked columns: value -> hash

    # ------------------------------------------------------------------ schema

    @contextmanager
    def _errors(self, context: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            where = f"source {self.ref.table} on {self.connection.name}"
            raise translate_db_error(exc, SourceError, f"{context} {where}") from exc

    def describe(self) -> TableSchema:
        if self._schema is None:
            with self._errors("cannot read"), self.engine.connect() as conn:
                # Without its keys: no source key is ever read, and a run with nothing to do
                # makes 6 statements on the source instead of 12 (PostgreSQL).
                schema = reflect(conn, self.ref.schema_name, self.ref.table_name, keys=False)
            if schema is None:
                raise SourceError(
                    f"source table {self.ref.table} does not exist on connection "
                    f"{self.connection.name} ({self.connection.display_url})",
                    retryable=False,
                )
            schema = self._sqlite_text_watermark(schema)
            self._schema = schema
            self._check_job_columns(schema)
            self._schema, self._maskers = selection.choose(schema, self.job, self.zone)
        return self._schema

    def _sqlite_text_watermark(self, schema: TableSchema) -> TableSchema:
        """On SQLite a timestamp watermark may be declared TEXT (or untyped): SQLite keeps
        timestamps as text either way, so the column is read as a SQLite text timestamp."""
        spec = self.job.watermark
        if schema.dialect != "sqlite" or spec is None or spec.type is not WatermarkType.TIMESTAMP:
            return schema
        column = schema.find(spec.column)
        if column is None or column.family not in (Family.STRING, Family.OTHER):
            return schema
        as_timestamp = replace(
            column, family=Family.TIMESTAMP, timestamp_kind=TimestampKind.SQLITE_TEXT
        )
        return replace(
            schema, columns=tuple(as_timestamp if c is column else c for c in schema.columns)
        )

    def _check_job_columns(self, schema: TableSchema) -> None:
        job = self.job
        wanted: list[tuple[str, str]] = [(c, "primary_key") for c in job.primary_key]
        if job.watermark:
            wanted.append((job.watermark.column, "watermark.column"))
            if job.watermark.tiebreaker:
                wanted.append((job.watermark.tiebreaker, "watermark.tiebreaker"))
        if job.soft_delete:
            wanted.append((job.soft_delete.column, "soft_delete.column"))
        for name, key in wanted:
            if schema.find(name) is None:
                raise SourceError(
                    f"job {job.job_id}: {key}: column {name!r} does not exist in source table "
                    f"{self.ref.table}",
                    retryable=False,
                )
        if job.watermark:
            column = self._column(job.watermark.column)
            expected = (
                {Family.TIMESTAMP}
                if job.watermark.type is WatermarkType.TIMESTAMP
                else {Family.INTEGER}
            )
            if column.family not in expected and not (
                schema.dialect == "sqlite" and column.family in (Family.STRING, Family.OTHER)
            ):
                raise SourceError(
                    f"job {job.job_id}: watermark.column: {column.name!r} is a {column.family} "
                    f"column, not a {job.watermark.type.value} column",
                    retryable=False,
                )
            if job.watermark.tiebreaker:
                tiebreaker = self._column(job.watermark.tiebreaker)
                if tiebreaker.family is not Family.INTEGER:
                    raise SourceError(
                        f"job {job.job_id}: watermark.tiebreaker: {tiebreaker.name!r} must be an "
                        f"integer column (it is {tiebreaker.family})",
                        retryable=False,
                    )

    def _column(self, name: str) -> ColumnInfo:
        column = self.describe().find(name)
        assert column is not None
        return column

    # ------------------------------------------------------------------ bounds

    def upper_bound(self, low: Watermark | None) -> Bound:
        assert self.job.watermark is not None
        spec = self.job.watermark
        column = self._column(spec.column)
        if spec.type is WatermarkType.INTEGER:
            with self._errors("cannot read the upper bound of"), self.engine.connect() as conn:
                table = self.describe().clause([column.name])
                high = conn.execute(select(func.max(table.c[column.name]))).scalar()
            return Bound(
                high=None if high is None else int(high),
                reason=f"greatest {column.name} at run start",
            )
        with self._errors("cannot compute the upper bound of"), self.engine.connect() as conn:
            cap = timestamp_cap(conn)
            digits = self._timestamp_digits(conn, column)
        return Bound(
            high=inclusive_high(cap.cap, digits),
            reason=cap.reason,
            blind=cap.blind,
            hold=cap.hold,
            now=cap.now,
        )

    def anomalies(self, now: datetime | None) -> Anomalies:
        """Count rows with a NULL watermark, and rows stamped after ``now`` (the source's clock)."""
        spec = self.job.watermark
        assert spec is not None
        table = self.describe().clause()
        wm = table.c[self._column(spec.column).name]
        with self._errors("cannot inspect"), self.engine.connect() as conn:
            nulls = conn.execute(select(func.count()).select_from(table).where(wm.is_(None)))
            null_rows = int(nulls.scalar_one())
            if now is None or spec.type is WatermarkType.INTEGER:
                return Anomalies(null_rows=null_rows)
            beyond = self._comparator(conn)(wm, ">", now)
            row = conn.execute(select(func.count(), func.max(wm)).where(beyond)).one()
        future_max = None
        if row[1] is not None:
            convert = read_converter(self._column(spec.column), self.zone)
            future_max = convert(row[1]) if convert is not None else row[1]
        return Anomalies(null_rows=null_rows, future_rows=int(row[0]), future_max=future_max)

    def _timestamp_digits(self, conn: Connection, column: ColumnInfo) -> int | None:
        if column.timestamp_kind is TimestampKind.SQLITE_TEXT:
            return self._sqlite_formats(conn).digits
        if self.describe().dialect == "mysql":
            return column.precision or 0  # MySQL's DATETIME/TIMESTAMP default to whole seconds
        return column.precision

    def _sqlite_formats(self, conn: Connection) -> SqliteTextTimestamps:
        if self._sqlite_text is None:
            assert self.job.watermark is not None
            table = self.describe()
            self._sqlite_text = SqliteTextTimestamps.detect(
                conn, table.clause(), self._column(self.job.watermark.column).name, self.zone
            )
        return self._sqlite_text

    # ------------------------------------------------------------------ reads

    def read_window(
        self,
        low: Watermark | None,
        high: datetime | int | None,
        *,
        inclusive: bool,
        batch_size: int,
    ) -> Iterator[Batch]:
        spec = self.job.watermark
        assert spec is not None
        table = self.describe().clause()
        where, wm, tb = self.window_condition(table, low, high, inclusive=inclusive)
        pk_cols = [table.c[self._column(c).name] for c in self.job.primary_key]
        with self._errors("cannot read"), self.engine.connect() as conn:
            compare = self._comparator(conn)
        include_nulls = spec.on_null == "include"
        if self.describe().dialect == "sqlite":
            rest = [tb] if tb is not None else pk_cols
            yield from self._pages(table, where, [wm, *rest], batch_size, self._key_of, compare)
            if include_nulls:
                yield from self._pages(table, wm.is_(None), pk_cols, batch_size, self._key_of, None)
            return
        if include_nulls:
            where = or_(where, wm.is_(None))
        query = select(table).where(where).order_by(wm, *([tb] if tb is not None else []))
        yield from self._stream(query, batch_size, self._key_of)

    def has_rows(
        self, low: Watermark | None, high: datetime | int | None, *, inclusive: bool
    ) -> bool:
        """Does the window hold any row (NULL watermarks included when the job reads them)?"""
        spec = self.job.watermark
        assert spec is not None
        table = self.describe().clause()
        where, wm, _ = self.window_condition(table, low, high, inclusive=inclusive)
        if spec.on_null == "include":
            where = or_(where, wm.is_(None))
        with self._errors("cannot read"), self.engine.connect() as conn:
            return conn.execute(select(wm).where(where).limit(1)).first() is not None

    def window_condition(
        self,
        table: Any,
        low: Watermark | None,
        high: datetime | int | None,
        *,
        inclusive: bool,
    ) -> tuple[ColumnElement[bool], Any, Any]:
        """The rows of the window ``(low, high]`` (``[low, high]`` when inclusive), and the
        watermark and tiebreaker columns of ``table``."""
        spec = self.job.watermark
        assert spec is not None
        wm = table.c[self._column(spec.column).name]
        tb = table.c[self._column(spec.tiebreaker).name] if spec.tiebreaker else None
        with self._errors("cannot read"), self.engine.connect() as conn:
            compare = self._comparator(conn)
        conditions: list[ColumnElement[bool]] = []
        if low is not None:
            low_value = low.id if spec.type is WatermarkType.INTEGER else low.ts
            if inclusive or (tb is not None and low.id is None):
                conditions.append(compare(wm, ">=", low_value))
            elif tb is not None:
                # The redundant `wm >= low` gives the index its start: from the OR alone
                # PostgreSQL scans the table (100+ ms for a LIMIT 1 over a million rows).
                conditions.append(compare(wm, ">=", low_value))
                conditions.append(
                    or_(
                        compare(wm, ">", low_value),
                        and_(compare(wm, "=", low_value), tb > raw_value(low.id)),
                    )
                )
            else:
                conditions.append(compare(wm, ">", low_value))
        if high is not None:
            conditions.append(compare(wm, "<=", high))
        return and_(true(), *conditions), wm, tb

    def read_all(
        self, after_pk: tuple[Any, ...] | None, high: datetime | int | None, *, batch_size: int
    ) -> Iterator[Batch]:
        schema = self.describe()
        table = schema.clause()
        pk_cols = [table.c[self._column(c).name] for c in self.job.primary_key]
        conditions: list[ColumnElement[bool]] = []
        if after_pk is not None:
            conditions.append(keyset_after(pk_cols, list(after_pk)))
        if self.job.soft_delete and self.job.soft_delete.mode == "delete":
            conditions.append(table.c[self._column(self.job.soft_delete.column).name].is_(None))
        spec = self.job.watermark
        if (
            spec is not None
            and self._column(spec.column).timestamp_kind is TimestampKind.SQLITE_TEXT
        ):
            with self._errors("cannot read"), self.engine.connect() as conn:
                self._sqlite_formats(conn)

        def key_within(row: dict[str, Any]) -> Watermark | None:
            key = self._key_of(row) if spec is not None else None
            if key is None or high is None:
                return key
            value = key.id if key.type is WatermarkType.INTEGER else key.ts
            return key if value is not None and value <= high else None  # type: ignore[operator]

        where = and_(true(), *conditions)
        if schema.dialect == "sqlite":
            yield from self._pages(table, where, pk_cols, batch_size, key_within, None, by_pk=True)
            return
        query = select(table).where(where).order_by(*pk_cols)
        yield from self._stream(query, batch_size, key_within, by_pk=True)

    def _stream(
        self,
        query: Any,
        batch_size: int,
        key_of: Callable[[dict[str, Any]], Watermark | None],
        *,
        by_pk: bool = False,
    ) -> Iterator[Batch]:
        """One ordered query, streamed from a server-side cursor: one snapshot, one sort."""
        with self._errors("cannot read"), self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(
                query
            )
            # When a run stops mid-read (cancelled, or the target failed), this generator is
            # closed: the server-side cursor is closed with it, not left to the garbage collector.
            with result:
                for partition in result.partitions(batch_size):
                    yield self._batch(partition, key_of, by_pk=by_pk)

    def _pages(
        self,
        table: Any,
        where: ColumnElement[bool],
        order: list[Any],
        batch_size: int,
        key_of: Callable[[dict[str, Any]], Watermark | None],
        compare_first: Callable[[Any, str, Any], ColumnElement[bool]] | None,
        *,
        by_pk: bool = False,
    ) -> Iterator[Batch]:
        """Keyset pages, each read in a short transaction of its own.

        SQLite holds a reader's lock for as long as a statement is open, which would block a
        target in the same file; so SQLite sources are read a page at a time, continuing after
        the last row's key (in ``order``, whose first column may need ``compare_first``).
        """
        names = [c.name for c in self.describe().columns]
        positions = [names.index(col.name) for col in order]
        last: list[Any] | None = None
        while True:
            condition = (
                where if last is None else and_(where, self._after(order, last, compare_first))
            )
            query = select(table).where(condition).order_by(*order).limit(batch_size)
            with self._errors("cannot read"), self.engine.connect() as conn:
                raw_rows = conn.execute(query).all()
            if not raw_rows:
                return
            batch = self._batch(raw_rows, key_of, by_pk=by_pk)
            tail = raw_rows[-1]
            last = [tail[i] for i in positions]
            if compare_first is not None:
                # The first key is compared as a canonical value (SQLite text timestamps).
                last[0] = convert_row(self._converters(), tail).row[order[0].name]
            yield batch
            if len(raw_rows) < batch_size:
                return

    @staticmethod
    def _after(
        order: list[Any],
        last: list[Any],
        compare_first: Callable[[Any, str, Any], ColumnElement[bool]] | None,
    ) -> ColumnElement[bool]:
        if compare_first is None or isinstance(last[0], str):
            # (A text the column could not read as a timestamp compares as the text it is.)
            return keyset_after(order, last)
        first, rest = order[0], order[1:]
        return or_(
            compare_first(first, ">", last[0]),
            and_(compare_first(first, "=", last[0]), keyset_after(rest, last[1:])),
        )

    def _batch(
        self,
        raw_rows: Any,
        key_of: Callable[[dict[str, Any]], Watermark | None],
        *,
        by_pk: bool,
    ) -> Batch:
        converters = self._converters()
        try:
            rows = [
                {
                    name: (convert(value) if convert is not None and value is not None else value)
                    for (name, convert), value in zip(converters, raw, strict=True)
                }
                for raw in raw_rows
            ]
            every, refused = rows, []
        except CONVERSION_ERRORS:
            # Some value cannot be read: convert row by row, naming the rows at fault.
            converted = [convert_row(converters, raw) for raw in raw_rows]
            every = [c.row for c in converted]  # key order, bad rows included (for the keys)
            rows = [c.row for c in converted if c.refused is None]
            refused = [c.refused for c in converted if c.refused is not None]
            key_of = tolerant_key(key_of)
        if not by_pk:
            # Rows come in key order: the last row with a key holds the greatest.
            last_key = next((k for k in map(key_of, reversed(every)) if k is not None), None)
            return Batch(rows=rows, last_key=last_key, refused=refused)
        keys = [k for k in (key_of(r) for r in every) if k is not None]
        pk_columns = [self._column(n).name for n in self.job.primary_key]
        last_pk = tuple(every[-1][c] for c in pk_columns)
        return Batch(
            rows=rows,
            last_pk=last_pk,
            max_key_within=max(keys) if keys else None,
            refused=refused,
        )

    def _converters(self) -> list[tuple[str, Converter | None]]:
        return [(c.name, self.converter(c)) for c in self.describe().columns]

    def converter(self, column: ColumnInfo) -> Converter | None:
        """A driver value of ``column`` (of :meth:`describe`) -> the value loaded: canonical, or
        its keyed hash when the job masks it (highmark/schema/selection.py)."""
        return self._maskers.get(column.name) or read_converter(column, self.zone)

    def _key_of(self, row: dict[str, Any]) -> Watermark | None:
        spec = self.job.watermark
        assert spec is not None
        value = row[self._column(spec.column).name]
        if value is None:
            return None
        if spec.type is WatermarkType.INTEGER:
            return Watermark(WatermarkType.INTEGER, id=int(value))
        tiebreak = row[self._column(spec.tiebreaker).name] if spec.tiebreaker else None
        if not isinstance(value, datetime):
            raise SourceError(
                f"job {self.job.job_id}: watermark column {spec.column!r} holds {value!r}, "
                "which is not a timestamp",
                retryable=False,
            )
        return Watermark(
            WatermarkType.TIMESTAMP, ts=value, id=None if tiebreak is None else int(tiebreak)
        )

    def _comparator(self, conn: Connection) -> Callable[[Any, str, Any], ColumnElement[bool]]:
        """Compare the watermark column with a canonical value, in the column's own terms."""
        spec = self.job.watermark
        assert spec is not None
        column = self._column(spec.column)
        if spec.type is WatermarkType.INTEGER:
            return lambda col, op, value: _operate(col, op, raw_value(value))
        kind = column.timestamp_kind
        if kind is TimestampKind.SQLITE_TEXT:
            return self._sqlite_formats(conn).comparator()
        zone = self.zone

        def compare(col: Any, op: str, value: Any) -> ColumnElement[bool]:
            if kind is TimestampKind.AWARE:
                bound = value
            elif kind is TimestampKind.UTC_NAIVE:
                bound = value.astimezone(UTC).replace(tzinfo=None)
            else:
                bound = value.astimezone(zone).replace(tzinfo=None)
            return _operate(col, op, raw_value(bound))

        return compare

    def close(self) -> None:
        """Sources hold no connection between reads."""


def tolerant_key(
    key_of: Callable[[dict[str, Any]], Watermark | None],
) -> Callable[[dict[str, Any]], Watermark | None]:
    """``key_of`` that gives None for a row whose key itself could not be read."""

    def key(row: dict[str, Any]) -> Watermark | None:
        try:
            return key_of(row)
        except SourceError:
            return None

    return key


def raw_value(value: Any) -> Any:
    """A bound parameter handed to the driver as is (no SQLAlchemy type processing)."""
    return bindparam(None, value, type_=NullType())


def _operate(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == ">":
        return col > value  # type: ignore[no-any-return]
    if op == ">=":
        return col >= value  # type: ignore[no-any-return]
    if op == "<=":
        return col <= value  # type: ignore[no-any-return]
    if op == "=":
        return col == value  # type: ignore[no-any-return]
    raise ValueError(op)


def keyset_after(columns: list[Any], values: list[Any]) -> ColumnElement[bool]:
    """``(c1, c2, …) > (v1, v2, …)`` expanded so that every database can use an index."""
    clauses = []
    for i, col in enumerate(columns):
        equal = [columns[j] == raw_value(values[j]) for j in range(i)]
        clauses.append(and_(*equal, col > raw_value(values[i])))
    return or_(*clauses)
