"""`highmark reconcile`: compare a job's source and target by primary key, inside the databases.

The key space is cut into ranges of about ``chunk_rows`` source rows (boundaries found by walking
the source's key index). For each range both databases compute (row count, two sums of row hashes)
(highmark/sources/row_hash.py); equal summaries mean equal rows and nothing more is read. A range
that differs is cut again — ``FANOUT`` parts, boundaries taken from the side with more rows in it —
until a range holds at most ``LEAF_ROWS`` rows on either side; those rows, and only those, are read
into Python and compared value by value. Memory holds one leaf at a time, whatever the table.

What is compared: the source's columns that the target has. With ``soft_delete`` in ``mark`` mode
only live rows are compared (rows whose deleted column is NULL, on each side that has the column);
in ``delete`` mode, source rows marked deleted are expected to be absent from the target.

Found: rows *missing* from the target, *extra* rows (in the target, gone from the source: hard
deletes), and *different* rows. A repair (highmark/movers/reconcile.py) upserts the missing and
different rows and deletes (or marks) the extra ones.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from highmark.config import ProjectConfig, TableJobSpec
from highmark.db import get_engine
from highmark.errors import DestinationError, SourceError, translate_db_error
from highmark.sources.row_hash import RowText, enable_sqlite
from highmark.sources.sql import SqlSource
from highmark.sqlschema import TableSchema, reflect
from highmark.sqltypes import ColumnInfo, describe_type, read_converter, write_converter

Key = tuple[Any, ...]
Summary = tuple[int, int, int]  # rows, and two sums of their hashes
LEAF_ROWS = 256
FANOUT = 16
SAMPLE = 20


@dataclass
class Leaf:
    """What one leaf range holds that differs: full source rows to (re)load, target keys to
    remove (with the source's row when the source still has it, marked deleted)."""

    missing: list[dict[str, Any]] = field(default_factory=list)
    different: list[dict[str, Any]] = field(default_factory=list)
    extra: list[Key] = field(default_factory=list)
    extra_rows: dict[Key, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ReconcileReport:
    job_id: str
    source: str
    target: str
    source_rows: int = 0
    target_rows: int = 0
    ranges: int = 0  # ranges summed on both sides
    leaves: int = 0  # ranges compared row by row
    rows_fetched: int = 0  # rows read into Python (both sides)
    missing: int = 0
    extra: int = 0
    different: int = 0
    samples: dict[str, list[Any]] = field(
        default_factory=lambda: {"missing": [], "extra": [], "different": []}
    )
    seconds: float = 0.0
    repaired: dict[str, int] | None = None
    run_id: int | None = None

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.different

    def summary(self) -> str:
        found = (
            "source and target match"
            if not self.differences
            else f"{self.missing} missing from the target, {self.extra} extra in the target "
            f"(gone from the source), {self.different} different"
        )
        return (
            f"{found}: {self.source_rows:,} source rows, {self.target_rows:,} target rows, "
            f"{self.ranges} ranges summed, {self.leaves} compared row by row "
            f"({self.rows_fetched:,} rows read), {self.seconds:.2f}s"
        )

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["differences"] = self.differences
        data["samples"] = json.loads(json.dumps(self.samples, default=str))
        return data


@dataclass(frozen=True)
class ReconcileResult:
    """A reconcile's report, and its run when it was one (``--repair``, or scheduled)."""

    report: ReconcileReport
    run: Any = None  # RunRecord

    def to_json(self) -> dict[str, Any]:
        data = self.report.to_json()
        data["run"] = self.run.to_json() if self.run is not None else None
        return data


class _Side:
    """One database's view of the job's table: summaries, boundaries and rows of key ranges."""

    def __init__(
        self,
        role: str,
        engine: Engine,
        schema: TableSchema,
        keys: list[ColumnInfo],
        compared: list[ColumnInfo],
        live_column: ColumnInfo | None,
        zone: str,
    ) -> None:
        self.role = role
        self.engine = engine
        enable_sqlite(engine)
        self.dialect = engine.dialect.name
        self.quote = engine.dialect.identifier_preparer.quote
        self.schema = schema
        self.keys = keys
        self.compared = compared
        self.zone = ZoneInfo(zone)
        self.sql = RowText(self.dialect, self.quote, zone)
        self.table = ".".join(self.quote(p) for p in schema.qualified_name.split("."))
        self.live = f"{self.quote(live_column.name)} IS NULL" if live_column else "1 = 1"
        self.key_sql = [self.sql.key(k) for k in keys]
        self.readers = {c.name: read_converter(c, self.zone) for c in schema.columns}
        self.writers = [write_converter(k, self.dialect, self.zone) for k in keys]
        self._conn: Connection | None = None
        self.native = False  # both sides PostgreSQL with the same column types

    def _run(self, query: str, params: dict[str, Any]) -> list[Any]:
        """One query on the side's own connection (kept for the whole comparison), each in a
        short transaction of its own."""
        try:
            if self._conn is None:
                self._conn = self.engine.connect()
            try:
                return list(self._conn.execute(text(query), params).all())
            finally:
                self._conn.rollback()
        except SQLAlchemyError as exc:
            self.close()
            error = SourceError if self.role == "source" else DestinationError
            raise translate_db_error(exc, error, f"cannot reconcile the {self.role}") from exc

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
            self._conn = None

    def _bind(self, key: Key, prefix: str, params: dict[str, Any]) -> list[str]:
        names = []
        for i, (value, convert) in enumerate(zip(key, self.writers, strict=True)):
            name = f"{prefix}{i}"
            params[name] = convert(value) if convert is not None and value is not None else value
            names.append(f":{name}")
        return names

    def _range(self, lo: Key | None, hi: Key | None, params: dict[str, Any]) -> str:
        conditions = [self.live]
        if lo is not None:
            conditions.append(self._compare(self._bind(lo, "lo", params), ">"))
        if hi is not None:
            conditions.append(self._compare(self._bind(hi, "hi", params), "<="))
        return " AND ".join(conditions)

    def _compare(self, values: list[str], op: str) -> str:
        """``(k1, k2, …) op (v1, v2, …)`` expanded so that every database can use its index."""
        strict = op[0]
        clauses = []
        for i, col in enumerate(self.key_sql):
            last = i == len(self.key_sql) - 1
            equal = [f"{self.key_sql[j]} = {values[j]}" for j in range(i)]
            here = f"{col} {op if last else strict} {values[i]}"
            clauses.append("(" + " AND ".join([*equal, here]) + ")")
        return "(" + " OR ".join(clauses) + ")"

    def summaries(self, lo: Key | None, hi: Key | None, edges: list[Key]) -> list[Summary]:
        """(count, sum, sum) of each part of ``(lo, hi]`` cut at ``edges``, in one query."""
        params: dict[str, Any] = {}
        where = self._range(lo, hi, params)
        bucket = "0"
        if edges:
            cases = " ".join(
                f"WHEN {self._compare(self._bind(edge, f'e{i}_', params), '<=')} THEN {i}"
                for i, edge in enumerate(edges)
            )
            bucket = f"CASE {cases} ELSE {len(edges)} END"
        if self.native:
            s1, s2 = "sum(h)", "0"
            row = ", ".join(self.quote(c.name) for c in self.compared)
            value = f"hashtextextended(ROW({row})::text, 0)"
        else:
            s1, s2 = self.sql.sums("h")
            value = self.sql.digest(self.sql.text(self.compared))
        inner = f"SELECT {bucket} AS b, {value} AS h FROM {self.table} WHERE {where}"
        query = f"SELECT b, count(*), {s1}, {s2} FROM ({inner}) x GROUP BY b"
        found = [(0, 0, 0)] * (len(edges) + 1)
        for b, count, a, c in self._run(query, params):
            found[int(b)] = (int(count), int(a or 0), int(c or 0))
        return found

    def boundaries(self, lo: Key | None, hi: Key | None, step: int) -> list[Key]:
        """Keys every ``step`` rows of the range (in key order), the range's end excluded: one
        query, numbering the range's keys."""
        order = ", ".join(self.key_sql)
        names = ", ".join(self.quote(k.name) for k in self.keys)
        params: dict[str, Any] = {"step": step}
        where = self._range(lo, hi, params)
        numbered = (
            f"SELECT {names}, row_number() OVER (ORDER BY {order}) AS hm_n "
            f"FROM {self.table} WHERE {where}"
        )
        rows = self._run(
            f"SELECT {names} FROM ({numbered}) x WHERE mod(hm_n, :step) = 0 ORDER BY hm_n",
            params,
        )
        found = [self._key(row) for row in rows]
        if found and hi is not None and found[-1] == hi:
            found.pop()
        return found

    def _key(self, raw: Any) -> Key:
        return tuple(_canonical(self._read(k.name, v)) for k, v in zip(self.keys, raw, strict=True))

    def _read(self, name: str, value: Any) -> Any:
        convert = self.readers.get(name)
        return convert(value) if convert is not None and value is not None else value

    def rows(self, lo: Key | None, hi: Key | None) -> dict[Key, dict[str, Any]]:
        params: dict[str, Any] = {}
        where = self._range(lo, hi, params)
        return self._fetch(where, params)

    def by_keys(self, keys: list[Key]) -> dict[Key, dict[str, Any]]:
        """Rows with these keys, live or not."""
        params: dict[str, Any] = {}
        tuples = [f"({', '.join(self._bind(k, f'k{i}_', params))})" for i, k in enumerate(keys)]
        columns = ", ".join(self.quote(k.name) for k in self.keys)
        return self._fetch(f"({columns}) IN ({', '.join(tuples)})", params)

    def _fetch(self, where: str, params: dict[str, Any]) -> dict[Key, dict[str, Any]]:
        names = [c.name for c in self.schema.columns]
        listed = ", ".join(self.quote(n) for n in names)
        rows = self._run(f"SELECT {listed} FROM {self.table} WHERE {where}", params)
        found = {}
        positions = [names.index(k.name) for k in self.keys]
        for raw in rows:
            row = {n: self._read(n, v) for n, v in zip(names, raw, strict=True)}
            found[tuple(_canonical(row[names[p]]) for p in positions)] = row
        return found


class Reconciler:
    """Compares one job's source and target (see the module docstring)."""

    def __init__(
        self,
        config: ProjectConfig,
        job: TableJobSpec,
        *,
        chunk_rows: int,
        on_leaf: Callable[[Leaf], None] | None = None,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        self.job = job
        self.chunk_rows = chunk_rows
        self.on_leaf = on_leaf
        self.check = check
        source_conn = config.resolve(job.source.connection)
        target_conn = config.resolve(job.target.connection)
        plain = job.model_copy(update={"soft_delete": None, "watermark": None})
        source_schema = SqlSource(source_conn, job.source, plain).describe()
        target_engine = get_engine(target_conn.url, "target")
        try:
            with target_engine.connect() as conn:
                target_schema = reflect(conn, job.target.schema_name, job.target.table_name)
        except SQLAlchemyError as exc:
            raise translate_db_error(exc, DestinationError, "cannot read the target") from exc
        if target_schema is None:
            raise DestinationError(
                f"target table {job.target.table} does not exist: run the job first",
                retryable=False,
            )
        self.source_schema = source_schema
        soft = job.soft_delete
        soft_name = soft.column.lower() if soft is not None else None
        pairs = [
            (col, target_schema.find(col.name))
            for col in source_schema.columns
            if not (soft is not None and soft.mode == "mark" and col.name.lower() == soft_name)
            and not job.masks(col.name)  # its target value is a hash of the source's
        ]
        pairs = [(s, t) for s, t in pairs if t is not None]
        self.pairs = [(s.name, t.name) for s, t in pairs if t is not None]
        keys = [(_find(source_schema, k), _find(target_schema, k)) for k in job.primary_key]
        source_live = target_live = None
        if soft is not None:
            source_live = source_schema.find(soft.column)
            if soft.mode == "mark":
                target_live = target_schema.find(soft.column)
        self.source = _Side(
            "source", SqlSource(source_conn, job.source, plain).engine, source_schema,
            [s for s, _ in keys], [s for s, _ in pairs], source_live, source_conn.timezone,
        )  # fmt: skip
        self.target = _Side(
            "target", target_engine, target_schema, [t for _, t in keys],
            [t for _, t in pairs if t is not None], target_live, target_conn.timezone,
        )  # fmt: skip
        self.soft_in_source = source_live is not None
        native = self.source.dialect == self.target.dialect == "postgresql" and all(
            t is not None and describe_type(s) == describe_type(t) for s, t in pairs
        )
        self.source.native = self.target.native = native
        self.report = ReconcileReport(job.job_id, job.source.table, job.target.table)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="highmark-reconcile")

    def run(self) -> ReconcileReport:
        started = time.monotonic()
        try:
            # Boundaries every chunk_rows / FANOUT source rows: each top range is summed in
            # FANOUT parts at once, so a range that differs is not read again to find its part.
            step = max(1, math.ceil(self.chunk_rows / FANOUT))
            fine = self.source.boundaries(None, None, step)
            tops = fine[FANOUT - 1 :: FANOUT]
            for lo, hi in zip([None, *tops], [*tops, None], strict=True):
                self.check()
                edges = [e for e in fine if _inside(e, lo, hi)]
                parts = self._sum(lo, hi, edges)
                bounds = zip([lo, *edges], [*edges, hi], strict=True)
                for (s, t), (sub_lo, sub_hi) in zip(parts, bounds, strict=True):
                    self.report.source_rows += s[0]
                    self.report.target_rows += t[0]
                    if s != t:
                        self._descend(sub_lo, sub_hi, s, t)
        finally:
            self._pool.shutdown()
            self.source.close()
            self.target.close()
        self.report.seconds = round(time.monotonic() - started, 3)
        return self.report

    def _sum(
        self, lo: Key | None, hi: Key | None, edges: list[Key]
    ) -> list[tuple[Summary, Summary]]:
        """Both databases sum the parts at once (each side has its own connection)."""
        pending = self._pool.submit(self.source.summaries, lo, hi, edges)
        target = self.target.summaries(lo, hi, edges)
        self.report.ranges += len(edges) + 1
        return list(zip(pending.result(), target, strict=True))

    def _descend(self, lo: Key | None, hi: Key | None, source: Summary, target: Summary) -> None:
        """A range that differs: compare its rows, or cut it and sum the parts."""
        rows = max(source[0], target[0])
        if rows <= LEAF_ROWS:
            self._leaf(lo, hi)
            return
        side = self.source if source[0] >= target[0] else self.target
        edges = side.boundaries(lo, hi, math.ceil(rows / FANOUT))
        if not edges:
            self._leaf(lo, hi)
            return
        parts = self._sum(lo, hi, edges)
        for sub_lo, sub_hi, (s, t) in zip([lo, *edges], [*edges, hi], parts, strict=True):
            self.check()
            if s != t:
                self._descend(sub_lo, sub_hi, s, t)

    def _leaf(self, lo: Key | None, hi: Key | None) -> None:
        report = self.report
        report.leaves += 1
        source = self.source.rows(lo, hi)
        target = self.target.rows(lo, hi)
        report.rows_fetched += len(source) + len(target)
        leaf = Leaf()
        for key, row in source.items():
            other = target.get(key)
            if other is None:
                leaf.missing.append(row)
                _sample(report.samples["missing"], key)
            elif any(not same_value(row[s], other[t]) for s, t in self.pairs):
                leaf.different.append(row)
                _sample(report.samples["different"], key)
        leaf.extra = [key for key in target if key not in source]
        for key in leaf.extra:
            _sample(report.samples["extra"], key)
        if leaf.extra and self.soft_in_source:
            leaf.extra_rows = self.source.by_keys(leaf.extra)  # soft-deleted at the source
        report.missing += len(leaf.missing)
        report.different += len(leaf.different)
        report.extra += len(leaf.extra)
        if self.on_leaf is not None and (leaf.missing or leaf.different or leaf.extra):
            self.on_leaf(leaf)


def _inside(key: Key, lo: Key | None, hi: Key | None) -> bool:
    """Is ``key`` strictly inside ``(lo, hi)`` (keys come from the source's own order)?"""
    return (lo is None or key > lo) and (hi is None or key < hi)


def _find(schema: TableSchema, name: str) -> ColumnInfo:
    column = schema.find(name)
    if column is None:
        raise SourceError(
            f"primary key column {name!r} is not in {schema.qualified_name}", retryable=False
        )
    return column


def _sample(samples: list[Any], key: Key) -> None:
    if len(samples) < SAMPLE:
        samples.append(key[0] if len(key) == 1 else list(key))


def _canonical(value: Any) -> Any:
    """A key value as both sides agree on it."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, bytes | memoryview | bytearray):
        return bytes(value)
    return value


def same_value(a: Any, b: Any) -> bool:
    """Do two canonical values (of possibly different types on the two sides) mean the same?"""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return _truth(a) == _truth(b)
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b))
    if isinstance(a, datetime) and isinstance(b, datetime):
        return _utc(a) == _utc(b)
    if type(a) is type(b):
        return bool(a == b)
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return bool(_json(a) == _json(b))
    if isinstance(a, date) or isinstance(b, date):
        return str(a)[:10] == str(b)[:10]
    if isinstance(a, bytes | memoryview) or isinstance(b, bytes | memoryview):
        return bytes(a) == bytes(b) if not isinstance(a, str) and not isinstance(b, str) else False
    return (
        str(a).lower() == str(b).lower()
        if isinstance(a, uuid.UUID) or isinstance(b, uuid.UUID)
        else str(a) == str(b)
    )


def _truth(value: Any) -> bool | None:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "yes")
    return bool(value)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
