"""The bulk read path: key ranges streamed out of PostgreSQL with COPY (and, from any source,
the key ranges that a destination's fast path pulls itself: highmark/destinations/ranges.py).

Rows never become Python objects. The window is cut into ranges of about ``batch_size`` rows by
probing the key at each boundary (an index-only scan of one batch), and each range is handed to
the destination as a :class:`PostgresCopyRange`, which it pulls with
``COPY (SELECT …) TO STDOUT``. A range ends exactly at its probed key, so the run checkpoints
after it as after any batch. Without a tiebreaker, a range takes every row of its last timestamp
(ties are never cut), so resuming after it is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, not_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from highmark.models import Watermark, WatermarkType, later_of
from highmark.sources.base import Batch
from highmark.sources.conversion import CONVERSION_ERRORS
from highmark.sources.sql import keyset_after, raw_value, tolerant_key
from highmark.sqltypes import read_converter

if TYPE_CHECKING:
    from highmark.sources.sql import SqlSource

COPY_CHUNK_BYTES = 1 << 20
# Wait for more COPY OUT data rather than hand on less than this (a write per row would be slow).
COPY_MIN_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class PostgresCopyRange:
    source: SqlSource
    where: ColumnElement[bool]
    table: Any = None  # the table construct ``where`` is written over (rows() selects from it)
    # ``where`` without its filter of rows (soft-deleted rows left out of a first load): the
    # range's bounds on its keys alone, which an index answers by itself (None: ``where`` is).
    keys: ColumnElement[bool] | None = None

    def driver_sql(self, dialect: Any, *, keys: bool = False) -> tuple[str, Any]:
        """The range's condition (``keys``: its bounds on its keys alone) as the driver takes
        it: its text, and its parameters (a list when positional, else a dict)."""
        clause = self.keys if keys and self.keys is not None else self.where
        compiled = clause.compile(dialect=dialect)
        if compiled.positional:
            return str(compiled), [compiled.params[k] for k in compiled.positiontup or ()]
        return str(compiled), compiled.params

    @property
    def source_columns(self) -> list[str]:
        return [c.name for c in self.source.describe().columns]

    @contextmanager
    def stream(
        self, select_list: list[str], *, binary: bool, options: str = ""
    ) -> Iterator[Iterator[bytes]]:
        """``COPY (SELECT <select_list> FROM source WHERE <range>) TO STDOUT``, in chunks; in
        binary, or with the given COPY ``options`` (``FORMAT csv, …``)."""
        engine = self.source.engine
        where = self.where.compile(dialect=engine.dialect)
        name = self._quoted_name()
        statement = (
            f"COPY (SELECT {', '.join(select_list)} FROM {name} WHERE {where}) TO STDOUT"
            + (" (FORMAT binary)" if binary else f" ({options})" if options else "")
        )
        with self.source._errors("cannot copy out of"), engine.connect() as conn:
            raw: Any = conn.connection.dbapi_connection
            with raw.cursor() as cursor, cursor.copy(statement, where.params):
                yield _chunks(raw)
            conn.rollback()

    @contextmanager
    def fetch(self, select_list: list[str], size: int) -> Iterator[Iterator[list[Any]]]:
        """``SELECT <select_list> FROM source WHERE <range>`` from a server-side cursor, in lists
        of up to ``size`` tuples (the values as psycopg loads them: cast them in SQL to text
        where the destination wants text)."""
        engine = self.source.engine
        where = self.where.compile(dialect=engine.dialect)
        statement = f"SELECT {', '.join(select_list)} FROM {self._quoted_name()} WHERE {where}"
        with self.source._errors("cannot read"), engine.connect() as conn:
            raw: Any = conn.connection.dbapi_connection
            with raw.cursor(name="highmark_range") as cursor:
                cursor.itersize = size
                cursor.execute(statement, where.params)
                yield iter(lambda: cursor.fetchmany(size), [])
            conn.rollback()

    def _quoted_name(self) -> str:
        preparer = self.source.engine.dialect.identifier_preparer
        return ".".join(preparer.quote(p) for p in self.source.describe().qualified_name.split("."))

    def read(self) -> Batch:
        """The range's rows as canonical values, in primary-key order (the row path), and those
        that could not be converted."""
        source = self.source
        table = self.table if self.table is not None else source.describe().clause()
        pk = [table.c[_name(source, c)] for c in source.job.primary_key]
        with source._errors("cannot read"), source.engine.connect() as conn:
            raw = conn.execute(select(table).where(self.where).order_by(*pk)).all()
        return source._batch(raw, lambda _row: None, by_pk=False)


def _chunks(raw: Any) -> Iterator[bytes]:
    """The COPY OUT data under way on ``raw`` (a psycopg connection), in large writes.

    libpq hands COPY OUT data back a row per call, and psycopg's ``Copy.read()`` drives its whole
    wait loop for each row: ~3 µs a row, most of the client's CPU in a large load. This reads
    every row libpq already holds in one tight loop and waits only when it holds too little; it
    also reads the copy's final result, which leaves psycopg's ``Copy`` nothing to do at exit.
    """
    reader = _CopyOutReader(raw.pgconn)
    while (chunk := raw.wait(reader.read())) is not None:
        yield chunk


class _CopyOutReader:
    def __init__(self, pgconn: Any) -> None:
        self.pgconn = pgconn
        self.done = False

    def read(self) -> Generator[Any, Any, bytes | None]:
        """A psycopg generator: about ``COPY_CHUNK_BYTES`` of data, or None at the end."""
        from psycopg import errors, generators, pq
        from psycopg.waiting import Wait

        if self.done:
            return None
        pgconn, buffer = self.pgconn, bytearray()
        get = pgconn.get_copy_data
        while len(buffer) < COPY_CHUNK_BYTES:
            nbytes, data = get(1)
            if nbytes > 0:
                buffer += data
            elif nbytes == 0:  # nothing more received yet
                if len(buffer) >= COPY_MIN_CHUNK_BYTES:
                    break
                while not (yield Wait.R):
                    pass
                pgconn.consume_input()
            else:  # -1: the data is over; the copy's result follows
                self.done = True
                results = yield from generators.fetch_many(pgconn)
                if not results or results[0].status != pq.ExecStatus.COMMAND_OK:
                    raise (
                        errors.error_from_result(results[0])
                        if results
                        else errors.InternalError("COPY TO STDOUT ended without a result")
                    )
                break
        return bytes(buffer) if buffer else None


def window_ranges(
    source: SqlSource,
    low: Watermark | None,
    high: datetime | int | None,
    *,
    inclusive: bool,
    batch_size: int,
    skip_deleted: bool = False,
    upto: Watermark | None = None,
) -> Iterator[Batch]:
    """The window ``(low, high]`` as key ranges of about ``batch_size`` rows, in key order.
    ``skip_deleted`` leaves out soft-deleted rows (a first load into an empty target); ``upto``
    ends the window at that key, included (a gap between ranges a parallel load has done)."""
    spec = source.job.watermark
    assert spec is not None
    table = source.describe().clause()
    where, wm, tb = source.window_condition(table, low, high, inclusive=inclusive)
    # Past the first range, the end of the one before bounds the window from below: its low
    # mark is then implied, and is left out (terms fewer to test on every row; and SQLite,
    # planning the same statement with literal values, takes its index scan's start from the
    # low mark's tiebreaker OR and reads each range from the window's start).
    later, _, _ = source.window_condition(table, None, high, inclusive=False)
    also: list[ColumnElement[bool]] = []
    if upto is not None:
        past, _, _ = source.window_condition(table, upto, None, inclusive=False)
        also.append(not_(past))
    rows_filter = None
    if skip_deleted and source.job.soft_delete is not None:
        rows_filter = table.c[_name(source, source.job.soft_delete.column)].is_(None)
    order = [wm, *([tb] if tb is not None else [])]
    yield from _ranges(
        source, table, and_(where, *also), order, batch_size,
        lambda row, _: Batch(last_key=_key(source, row)), later=and_(later, *also),
        rows_filter=rows_filter,
    )  # fmt: skip
    if spec.on_null == "include":
        # Rows without a watermark are read on every run, in primary-key order.
        pk = [table.c[_name(source, c)] for c in source.job.primary_key]
        yield from _ranges(source, table, wm.is_(None), pk, batch_size, lambda _r, _w: Batch())


def key_ranges(
    source: SqlSource,
    after_pk: tuple[Any, ...] | None,
    high: datetime | int | None,
    *,
    batch_size: int,
) -> Iterator[Batch]:
    """The whole table in primary-key ranges (full loads), with the greatest watermark key at or
    below ``high`` of each range when the job has a watermark."""
    table = source.describe().clause()
    pk = [table.c[_name(source, c)] for c in source.job.primary_key]
    conditions: list[ColumnElement[bool]] = [pk[0].is_not(None)]
    if source.job.soft_delete and source.job.soft_delete.mode == "delete":
        conditions.append(table.c[_name(source, source.job.soft_delete.column)].is_(None))
    start = [] if after_pk is None else [_after(source, pk, list(after_pk))]
    converters = [_converter(source, c.name) for c in pk]

    def describe(row: Any, range_where: ColumnElement[bool]) -> Batch:
        last_pk = tuple(
            conv(v) if conv is not None and v is not None else v
            for conv, v in zip(converters, row, strict=True)
        )
        return Batch(
            last_pk=last_pk, max_key_within=_max_key_within(source, table, range_where, high)
        )

    yield from _ranges(
        source, table, and_(*start, *conditions), pk, batch_size, describe,
        later=and_(*conditions),
    )  # fmt: skip


def _ranges(
    source: SqlSource,
    table: Any,
    where: ColumnElement[bool],
    order: list[Any],
    batch_size: int,
    describe: Callable[[Any, ColumnElement[bool]], Batch],
    *,
    later: ColumnElement[bool] | None = None,
    rows_filter: ColumnElement[bool] | None = None,
) -> Iterator[Batch]:
    """Probe the key that ends each range (an index scan of one batch), then hand the range on.
    ``where`` bounds the first range; ``later`` (default ``where``) the ones after it, which also
    begin after the range before; ``rows_filter`` leaves rows out of every range, whose ``keys``
    then keep its bounds without it."""
    previous: list[Any] | None = None
    rest = where if later is None else later
    while True:
        # The range's own bounds come first: SQLite takes an index scan's bounds from the first
        # terms that give them, and the window's (its high bound) would make each range scan
        # to the window's end.
        bounds = where if previous is None else and_(_after(source, order, previous), rest)
        remaining = bounds if rows_filter is None else and_(bounds, rows_filter)
        with source._errors("cannot read"), source.engine.connect() as conn:
            boundary = conn.execute(
                select(*order).where(remaining).order_by(*order).offset(batch_size - 1).limit(1)
            ).first()
            last = boundary is None
            if boundary is None:
                boundary = conn.execute(
                    select(*order).where(remaining).order_by(*(c.desc() for c in order)).limit(1)
                ).first()
        if boundary is None:
            return
        values = list(boundary)
        range_where = _ending_at(source, order, values, remaining)
        keys = None if rows_filter is None else _ending_at(source, order, values, bounds)
        copy_range = PostgresCopyRange(source, range_where, table, keys)
        try:
            found = describe(boundary, range_where)
        except CONVERSION_ERRORS:
            # A key of the range cannot be read (an unparsable timestamp text in a SQLite
            # source): the range goes the row path, where its rows at fault are refused, named.
            yield _as_rows(source, copy_range)
        else:
            yield Batch(
                last_key=found.last_key,
                last_pk=found.last_pk,
                max_key_within=found.max_key_within,
                copy=copy_range,
            )
        if last:
            return
        previous = values


def _as_rows(source: SqlSource, copy_range: PostgresCopyRange) -> Batch:
    """A range read as a row batch: its readable rows, the rows refused, and the greatest key
    that could be read (in key and primary-key order, so both marks it moves are right)."""
    read = copy_range.read()
    every = [*read.rows, *(r.row for r in read.refused)]
    last_key = None
    if source.job.watermark is not None:
        key = tolerant_key(source._key_of)
        for found in map(key, every):
            last_key = later_of(last_key, found)
    pk = [_name(source, c) for c in source.job.primary_key]
    last_pk = max((tuple(row[c] for c in pk) for row in read.rows), default=None)
    return Batch(
        rows=read.rows,
        refused=read.refused,
        last_key=last_key,
        last_pk=last_pk,
        max_key_within=last_key,
    )


def _max_key_within(
    source: SqlSource, table: Any, where: ColumnElement[bool], high: datetime | int | None
) -> Watermark | None:
    if source.job.watermark is None:
        return None
    inner, wm, tb = source.window_condition(table, None, high, inclusive=False)
    order = [wm, *([tb] if tb is not None else [])]
    with source._errors("cannot read"), source.engine.connect() as conn:
        row = conn.execute(
            select(*order).where(and_(where, inner)).order_by(*(c.desc() for c in order)).limit(1)
        ).first()
    return None if row is None else _key(source, row)


def _key(source: SqlSource, row: Any) -> Watermark:
    """The watermark key of a (watermark[, tiebreaker]) row read from the source."""
    spec = source.job.watermark
    assert spec is not None
    convert = _converter(source, spec.column)
    value = convert(row[0]) if convert is not None else row[0]
    if spec.type is WatermarkType.INTEGER:
        return Watermark(WatermarkType.INTEGER, id=int(value))
    tiebreak = int(row[1]) if spec.tiebreaker else None
    return Watermark(WatermarkType.TIMESTAMP, ts=value, id=tiebreak)


def _name(source: SqlSource, column: str) -> str:
    found = source.describe().find(column)
    assert found is not None
    return found.name


def _converter(source: SqlSource, column: str) -> Any:
    found = source.describe().find(column)
    assert found is not None
    return read_converter(found, source.zone)


def _row_values(source: SqlSource, columns: list[Any]) -> bool:
    """Does the source compare a multi-column key as one row value? SQLite does, as an index
    range bound at no cost per row; elsewhere the expanded OR is what every database can use
    an index for."""
    return len(columns) > 1 and source.describe().dialect == "sqlite"


def _after(source: SqlSource, columns: list[Any], values: list[Any]) -> ColumnElement[bool]:
    """``(c1, c2, …) > (v1, v2, …)``: a row value on SQLite (:func:`_row_values`). Elsewhere, the
    OR plus the redundant ``c1 >= v1``: PostgreSQL cannot take an index bound from the OR alone,
    so each probe would scan the window from its start and filter (the probes of a load would
    cost O(ranges²)); with the bound it starts at the key."""
    if _row_values(source, columns):
        return tuple_(*columns) > tuple_(*map(raw_value, values))
    keyset = keyset_after(columns, values)
    if len(columns) == 1:
        return keyset
    return and_(columns[0] >= raw_value(values[0]), keyset)


def _ending_at(
    source: SqlSource, columns: list[Any], values: list[Any], remaining: ColumnElement[bool]
) -> ColumnElement[bool]:
    """``remaining`` up to ``(c1, c2, …) <= (v1, v2, …)``: a row value on SQLite, as in
    :func:`_after`; elsewhere the negated OR (whose negation gives PostgreSQL its index bound),
    after a redundant ``c1 <= v1`` that comes first (SQLite would take no upper bound from the
    negated OR: each range would read to the window's end)."""
    if _row_values(source, columns):
        return and_(tuple_(*columns) <= tuple_(*map(raw_value, values)), remaining)
    upper = columns[0] <= raw_value(values[0])
    return and_(upper, remaining, ~keyset_after(columns, values))
