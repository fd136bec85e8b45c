"""Column types across SQLite, PostgreSQL and MySQL/MariaDB.

highmark reads and writes raw driver values and converts them here, at the edge, so that what
crosses a run is one canonical Python value per type family:

=========  ==========================================================================
family     canonical value
=========  ==========================================================================
timestamp  ``datetime``, timezone-aware, UTC (naive source values are read in the
           connection's ``timezone``)
decimal    ``Decimal``            date / time   ``date`` / ``time``
json       ``dict``/``list``/…    binary        ``bytes``
=========  ==========================================================================

It also decides the type of a column created in a new target, and whether an existing target
column can take a source column.
"""

from __future__ import annotations

import enum
import json
import math
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import types as sqltypes

from highmark import infinity
from highmark.errors import ValueRefused
from highmark.infinity import InfiniteDay, InfiniteTime

Converter = Callable[[Any], Any]

SQLITE_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_MYSQL_MAX_VARCHAR = 16_000
_MYSQL_KEY_VARCHAR = 255


class Family(enum.StrEnum):
    INTEGER = "integer"
    DECIMAL = "decimal"
    FLOAT = "float"
    BOOLEAN = "boolean"
    STRING = "string"
    TIMESTAMP = "timestamp"
    DATE = "date"
    TIME = "time"
    INTERVAL = "interval"
    BINARY = "binary"
    JSON = "json"
    UUID = "uuid"
    ARRAY = "array"
    OTHER = "other"


class TimestampKind(enum.StrEnum):
    """How a timestamp column holds its instant."""

    AWARE = "aware"  # PostgreSQL timestamptz: the driver hands back aware values
    UTC_NAIVE = "utc_naive"  # MySQL TIMESTAMP read in a UTC session
    LOCAL_NAIVE = "local_naive"  # PostgreSQL timestamp, MySQL DATETIME: wall time in a zone
    SQLITE_TEXT = "sqlite_text"  # SQLite: ISO text (or epoch numbers)


@dataclass(frozen=True)
class ColumnInfo:
    """A reflected column: its name, type, nullability and family."""

    name: str
    type: sqltypes.TypeEngine[Any]
    nullable: bool
    family: Family
    dialect: str
    timestamp_kind: TimestampKind | None = None

    @property
    def precision(self) -> int | None:
        """Fractional-second digits of a timestamp column, when the database says."""
        for attr in ("fsp", "precision"):
            value = getattr(self.type, attr, None)
            if isinstance(value, int):
                return value
        return None


def family_of(type_: sqltypes.TypeEngine[Any]) -> Family:
    checks: list[tuple[type[Any] | tuple[type[Any], ...], Family]] = [
        (sqltypes.Boolean, Family.BOOLEAN),
        (sqltypes.Integer, Family.INTEGER),
        (sqltypes.Float, Family.FLOAT),
        (sqltypes.Numeric, Family.DECIMAL),
        (sqltypes.DateTime, Family.TIMESTAMP),
        (sqltypes.Date, Family.DATE),
        (sqltypes.Time, Family.TIME),
        (sqltypes.Interval, Family.INTERVAL),
        (sqltypes.JSON, Family.JSON),
        (sqltypes.Uuid, Family.UUID),
        (sqltypes.ARRAY, Family.ARRAY),
        (sqltypes._Binary, Family.BINARY),
        ((sqltypes.String, sqltypes.Enum), Family.STRING),
    ]
    if _is_dialect_type(type_, "postgresql", "INTERVAL"):
        return Family.INTERVAL
    if _is_dialect_type(type_, "mysql", "BIT"):
        return Family.INTEGER
    if _is_dialect_type(type_, "mysql", "YEAR"):
        return Family.INTEGER
    for cls, family in checks:
        if isinstance(type_, cls):
            return family
    if isinstance(type_, sqltypes.NullType):
        return Family.STRING
    return Family.OTHER


def _is_dialect_type(type_: sqltypes.TypeEngine[Any], dialect: str, name: str) -> bool:
    """``isinstance(type_, sqlalchemy.dialects.<dialect>.<name>)``, without importing the dialect:
    when nothing imported it, no type can be one of its classes (and a dialect package imports all
    its drivers' modules: ~90 ms for MySQL, which a PostgreSQL or SQLite project never needs)."""
    module = sys.modules.get(f"sqlalchemy.dialects.{dialect}")
    cls = getattr(module, name, None)
    return isinstance(cls, type) and isinstance(type_, cls)


def timestamp_kind(type_: sqltypes.TypeEngine[Any], dialect: str) -> TimestampKind:
    if dialect == "sqlite":
        return TimestampKind.SQLITE_TEXT
    if dialect == "postgresql":
        return (
            TimestampKind.AWARE if getattr(type_, "timezone", False) else TimestampKind.LOCAL_NAIVE
        )
    if isinstance(type_, sqltypes.TIMESTAMP):
        return TimestampKind.UTC_NAIVE
    return TimestampKind.LOCAL_NAIVE


def column_info(
    name: str, type_: sqltypes.TypeEngine[Any], nullable: bool, dialect: str
) -> ColumnInfo:
    family = family_of(type_)
    kind = timestamp_kind(type_, dialect) if family is Family.TIMESTAMP else None
    return ColumnInfo(
        name=name,
        type=type_,
        nullable=nullable,
        family=family,
        dialect=dialect,
        timestamp_kind=kind,
    )


# ---------------------------------------------------------------------------- reading


def to_utc(value: datetime, kind: TimestampKind, zone: ZoneInfo) -> datetime:
    """Interpret a driver's datetime as an instant, in UTC."""
    if value.__class__ is InfiniteTime:
        return infinity.as_utc(value)
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    if kind is TimestampKind.UTC_NAIVE:
        return value.replace(tzinfo=UTC)
    return local_to_utc(value, zone)


def local_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive wall time in ``zone`` stands for, read as PostgreSQL reads it.

    A wall time a daylight-saving change skips or repeats stands for two instants; PostgreSQL's
    ``timestamp AT TIME ZONE`` (and its reading of naive text in ``COPY``) takes the UTC offset
    in force before a spring-forward gap and after a fall-back, which is always the smaller of
    the two offsets, the later instant. The fast paths let PostgreSQL convert; the row path reads
    the same way so that a value lands as one instant whichever path a range takes. Python's
    default (``fold=0``) would take the earlier instant of a repeated hour."""
    if zone.key in _UTC_KEYS:  # the default zone, at half the cost of the general case
        return wall.replace(tzinfo=UTC)
    first, second = zone.utcoffset(wall), zone.utcoffset(wall.replace(fold=1))
    assert first is not None and second is not None  # a ZoneInfo always has an offset
    return (wall - min(first, second)).replace(tzinfo=UTC)


_UTC_KEYS = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT"})


def read_converter(column: ColumnInfo, zone: ZoneInfo) -> Converter | None:
    """Driver value -> canonical value, or None when the driver's value is already canonical."""
    family = column.family
    if family is Family.TIMESTAMP:
        kind = column.timestamp_kind or TimestampKind.LOCAL_NAIVE

        def timestamp(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, str):
                ends = infinity.from_text(value)
                if ends is not None:
                    return ends[0]
                value = datetime.fromisoformat(value.strip())
            elif isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value, UTC)
            elif isinstance(value, date) and not isinstance(value, datetime):
                value = datetime.combine(value, time())
            return to_utc(value, kind, zone)

        return timestamp
    if family is Family.DATE:

        def day(v: Any) -> Any:
            if isinstance(v, str):
                ends = infinity.from_text(v)
                if ends is not None:
                    return ends[1]
                # A day, or a day and a time of day (SQLite's DATE columns hold either);
                # anything after the day but a time ("0044-03-15 BC") is no day Python has.
                if len(v) > 10 and not (v[10] in " T" and v[11:12].isdigit()):
                    raise ValueError(f"not a date: {v!r}")
                return date.fromisoformat(v[:10])
            return v.date() if isinstance(v, datetime) else v

        return day
    if family is Family.TIME:
        return lambda v: (
            time.fromisoformat(v)
            if isinstance(v, str)
            else ((datetime.min + v).time() if isinstance(v, timedelta) else v)
        )
    if family is Family.DECIMAL:
        return lambda v: v if v is None or isinstance(v, Decimal) else Decimal(str(v))
    if family is Family.BOOLEAN:
        return lambda v: v if v is None else bool(v)
    if family is Family.JSON:
        return lambda v: json.loads(v) if isinstance(v, str | bytes) else v
    if family is Family.BINARY:
        return lambda v: bytes(v) if isinstance(v, memoryview | bytearray) else v
    return None


# ---------------------------------------------------------------------------- writing


def write_converter(column: ColumnInfo, dialect: str, zone: ZoneInfo) -> Converter | None:
    """Canonical value -> what the target's driver takes for ``column``."""
    family = column.family
    if family is Family.TIMESTAMP:
        kind = column.timestamp_kind or TimestampKind.LOCAL_NAIVE

        def timestamp(value: Any) -> Any:
            if not isinstance(value, datetime):
                return value
            if value.__class__ is InfiniteTime:  # no zone moves it
                if dialect == "postgresql":
                    return infinity.for_postgresql(value)
                naive = infinity.for_others(value)
                return naive.isoformat(" ", "microseconds") if dialect == "sqlite" else naive
            aware = value if value.tzinfo else value.replace(tzinfo=UTC)
            if kind is TimestampKind.AWARE:
                return aware
            local = aware.astimezone(UTC if kind is TimestampKind.UTC_NAIVE else zone)
            naive = local.replace(tzinfo=None)
            # isoformat is SQLITE_TIMESTAMP_FORMAT, ~5x faster than strftime.
            return naive.isoformat(" ", "microseconds") if dialect == "sqlite" else naive

        return timestamp
    if family is Family.DATE and dialect != "sqlite":
        if dialect == "postgresql":
            return lambda v: infinity.for_postgresql(v) if v.__class__ is InfiniteDay else v
        return lambda v: infinity.day_for_others(v) if v.__class__ is InfiniteDay else v
    if dialect == "sqlite":
        if family in (Family.DATE, Family.TIME):
            return lambda v: v.isoformat() if isinstance(v, date | time) else v
        if family is Family.DECIMAL:
            return decimal_text
    if family is Family.FLOAT and dialect in ("sqlite", "mysql"):
        return _float_for(dialect, column.name)
    if family is Family.JSON:
        if dialect == "postgresql":
            from psycopg.types.json import Json, Jsonb

            wrapper = Jsonb if _is_dialect_type(column.type, "postgresql", "JSONB") else Json
            return lambda v: v if v is None else wrapper(v)
        return lambda v: v if v is None or isinstance(v, str) else json.dumps(v)
    if family is Family.BOOLEAN:
        return lambda v: v if v is None else bool(v)
    if family is Family.INTEGER:
        return lambda v: int(v) if isinstance(v, bool | Decimal) else v
    if family is Family.DECIMAL:
        return lambda v: Decimal(str(v)) if isinstance(v, float) else v
    if family is Family.FLOAT:
        return lambda v: float(v) if isinstance(v, Decimal) else v
    if family in (Family.STRING, Family.UUID, Family.OTHER, Family.INTERVAL):
        if family is Family.UUID and dialect == "postgresql":
            return None
        return _to_text
    if family is Family.ARRAY and dialect != "postgresql":
        return lambda v: v if v is None else json.dumps(v, default=str)
    return None


def comparable(col: Any, info: ColumnInfo, dialect: str) -> Any:
    """A form of ``col`` that the database can test for distinctness exactly (a merge's
    change test)."""
    if dialect == "postgresql":
        from sqlalchemy import Text, cast
        from sqlalchemy.dialects import postgresql

        if info.family is Family.JSON and not isinstance(info.type, postgresql.JSONB):
            return cast(col, postgresql.JSONB)
        if info.family is Family.OTHER:
            return cast(col, Text)
    if dialect == "mysql" and info.family in (Family.STRING, Family.JSON, Family.OTHER):
        # Case- and trailing-space-insensitive collations would hide real changes.
        from sqlalchemy import cast
        from sqlalchemy.dialects import mysql  # imported where used: ~90 ms

        return cast(col, mysql.BINARY)
    return col


def _float_for(dialect: str, name: str) -> Converter:
    """Floats for SQLite, which would store a NaN as NULL, and MySQL/MariaDB, which hold no NaN
    nor infinity: such a value is refused, a bad row named by its row and column, instead of a
    silent NULL (SQLite) or a failed run (PyMySQL refuses to write it)."""
    if dialect == "sqlite":
        refused, reason = math.isnan, "SQLite stores no NaN (it would be NULL)"
    else:
        refused, reason = (lambda v: not math.isfinite(v)), "MySQL/MariaDB store no NaN or infinity"

    def to_float(value: Any) -> Any:
        if isinstance(value, Decimal):
            return float(value)
        if isinstance(value, float) and refused(value):
            raise ValueRefused(name, reason)
        return value

    return to_float


def decimal_text(value: Any) -> Any:
    """A Decimal positional, as the databases print decimals (``str()`` gives ``-1E-10`` for
    ``-0.0000000001``): the text a DECIMAL_TEXT column keeps (schema/sqlite_decimal.py), the
    fast paths' text. ``str()`` first: twice as fast as ``format()``, and almost always it."""
    if not isinstance(value, Decimal):
        return value
    text = str(value)
    return format(value, "f") if "E" in text else text


def _to_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


# ---------------------------------------------------------------------------- DDL


def target_type(column: ColumnInfo, dialect: str, *, in_key: bool) -> sqltypes.TypeEngine[Any]:
    """The type of ``column`` in a target created on ``dialect``."""
    # Each dialect's package is imported only for its own targets: below, mysql.* is only used
    # when dialect == "mysql", postgresql.* only when dialect == "postgresql".
    if dialect == "mysql":
        from sqlalchemy.dialects import mysql
    elif dialect == "postgresql":
        from sqlalchemy.dialects import postgresql
    source = column.type
    family = column.family
    if family is Family.INTEGER:
        if isinstance(source, sqltypes.SmallInteger) and not isinstance(
            source, sqltypes.BigInteger
        ):
            return sqltypes.SmallInteger()
        # SQLite's INTEGER is 64-bit: it becomes BIGINT elsewhere.
        if isinstance(source, sqltypes.BigInteger) or column.dialect == "sqlite":
            return sqltypes.BigInteger()
        return sqltypes.Integer()
    if family is Family.DECIMAL:
        numeric = source if isinstance(source, sqltypes.Numeric) else sqltypes.Numeric()
        if dialect == "sqlite":
            from highmark.schema import sqlite_decimal

            if sqlite_decimal.needs_text(numeric.precision, column.dialect, source):
                return sqlite_decimal.DecimalText(numeric.precision, numeric.scale)
        if numeric.precision is not None:
            return sqltypes.Numeric(numeric.precision, numeric.scale)
        return mysql.DECIMAL(65, 30) if dialect == "mysql" else sqltypes.Numeric()
    if family is Family.FLOAT:
        return sqltypes.Double()
    if family is Family.BOOLEAN:
        return sqltypes.Boolean(create_constraint=False)
    if family is Family.TIMESTAMP:
        precision = column.precision
        if dialect == "postgresql":
            return postgresql.TIMESTAMP(timezone=True, precision=precision)
        if dialect == "mysql":
            return mysql.DATETIME(fsp=6 if precision is None else precision)
        return sqltypes.DateTime()
    if family is Family.DATE:
        return sqltypes.Date()
    if family is Family.TIME:
        if dialect == "mysql":  # MySQL's TIME defaults to whole seconds
            return mysql.TIME(fsp=6 if column.precision is None else column.precision)
        return sqltypes.Time()
    if family is Family.BINARY:
        return mysql.LONGBLOB() if dialect == "mysql" else sqltypes.LargeBinary()
    if family is Family.JSON or (family is Family.ARRAY and dialect != "postgresql"):
        return postgresql.JSONB() if dialect == "postgresql" else sqltypes.JSON()
    if family is Family.ARRAY:
        return source
    if family is Family.UUID:
        return postgresql.UUID() if dialect == "postgresql" else sqltypes.String(36)
    if family is Family.INTERVAL and dialect == "postgresql":
        return postgresql.INTERVAL()
    length = getattr(source, "length", None)
    if dialect == "mysql":
        if in_key:
            return sqltypes.String(min(length or _MYSQL_KEY_VARCHAR, 768))
        if length is None or length > _MYSQL_MAX_VARCHAR:
            return mysql.LONGTEXT()
    if length is not None and family is Family.STRING:
        return sqltypes.String(length)
    return sqltypes.Text()


_COMPATIBLE: dict[Family, set[Family]] = {
    Family.INTEGER: {Family.INTEGER, Family.DECIMAL, Family.FLOAT, Family.BOOLEAN},
    Family.BOOLEAN: {Family.BOOLEAN, Family.INTEGER},
    Family.DECIMAL: {Family.DECIMAL, Family.FLOAT},
    Family.FLOAT: {Family.FLOAT, Family.DECIMAL},
    Family.STRING: {Family.STRING, Family.UUID, Family.JSON},
    Family.UUID: {Family.UUID, Family.STRING},
    Family.JSON: {Family.JSON, Family.STRING},
    Family.ARRAY: {Family.ARRAY, Family.JSON, Family.STRING},
    Family.INTERVAL: {Family.INTERVAL, Family.STRING},
    Family.OTHER: {Family.OTHER, Family.STRING},
}


def compatible(source: ColumnInfo, target: ColumnInfo) -> bool:
    """Can ``target`` hold every value of ``source`` without changing its meaning?"""
    return target.family in _COMPATIBLE.get(source.family, {source.family})


def describe_type(column: ColumnInfo) -> str:
    try:
        described = str(column.type.compile())
    except Exception:  # some reflected types compile only on their own dialect
        described = type(column.type).__name__
    if getattr(column.type, "timezone", False) and "TIME ZONE" not in described:
        described += " WITH TIME ZONE"  # the generic compiler drops it: say it, it matters
    return described
