"""Can a target column hold a source column's values, and if not, can it be widened to?

A target created by hand is accepted whenever its column holds the source's values without loss:
a wider integer, numeric or text type, SQLite ``TEXT`` for timestamps, dates and times (SQLite
keeps them as text anyway), ``INTEGER`` for booleans, text for JSON. A narrower column of the same
kind can be widened (``evolve``); a column of another kind that would lose data (text into an
integer column) is refused, in words a user understands.

SQLite enforces neither lengths nor integer sizes nor numeric precision: on a SQLite target a
column of the right kind always holds the source's values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import types as sqltypes

from highmark.sqltypes import (
    ColumnInfo,
    Family,
    TimestampKind,
    compatible,
    describe_type,
    target_type,
)

# Bytes of an integer type, by the name of its (reflected) class.
_INTEGER_BYTES = {"TINYINT": 1, "SMALLINT": 2, "MEDIUMINT": 3, "YEAR": 2, "BIGINT": 8, "BIT": 8}
# MySQL's unlimited text types (their reflected ``length`` is None or the byte limit).
_UNLIMITED_TEXT = {"TEXT", "MEDIUMTEXT", "LONGTEXT", "CLOB"}
# Families a SQLite TEXT column holds in their ISO text form.
_SQLITE_TEXT_FAMILIES = {Family.TIMESTAMP, Family.DATE, Family.TIME}
_WORDS = {
    Family.STRING: "text",
    Family.INTEGER: "integer",
    Family.DECIMAL: "decimal",
    Family.FLOAT: "floating-point",
    Family.BOOLEAN: "boolean",
    Family.TIMESTAMP: "timestamp",
    Family.DATE: "date",
    Family.TIME: "time",
    Family.INTERVAL: "interval",
    Family.BINARY: "binary",
    Family.JSON: "JSON",
    Family.UUID: "UUID",
    Family.ARRAY: "array",
    Family.OTHER: "other",
}


class Fit(enum.Enum):
    HOLDS = "holds"  # the target column takes every source value as it is
    WIDEN = "widen"  # it would after a widening ALTER (``widened`` says to what)
    LOSSY = "lossy"  # it cannot without losing data (``reason`` says why)


@dataclass(frozen=True)
class Verdict:
    fit: Fit
    target: ColumnInfo  # the target column as highmark writes it (see adapt())
    widened: sqltypes.TypeEngine[Any] | None = None
    reason: str = ""


def words(column: ColumnInfo) -> str:
    """A column's type in a user's terms: ``VARCHAR(20) (text)``."""
    return f"{describe_type(column)} ({_WORDS.get(column.family, str(column.family))})"


def adapt(source: ColumnInfo, target: ColumnInfo, dialect: str) -> ColumnInfo:
    """The target column as highmark writes it: a SQLite ``TEXT`` (or untyped) column taking
    timestamps is written as a SQLite text timestamp, in the form highmark's own targets use."""
    if (
        dialect == "sqlite"
        and source.family is Family.TIMESTAMP
        and target.family in (Family.STRING, Family.OTHER)
    ):
        return replace(target, family=Family.TIMESTAMP, timestamp_kind=TimestampKind.SQLITE_TEXT)
    return target


def judge(source: ColumnInfo, target: ColumnInfo, dialect: str, *, in_key: bool) -> Verdict:
    """Does ``target`` (on ``dialect``) hold every value of ``source``?"""
    target = adapt(source, target, dialect)
    if (
        dialect == "sqlite"
        and source.family in _SQLITE_TEXT_FAMILIES
        and target.family in (source.family, Family.STRING, Family.OTHER)
    ):
        return Verdict(Fit.HOLDS, target)
    if not compatible(source, target):
        return Verdict(Fit.LOSSY, target, reason=_lossy_reason(source, target))
    if dialect == "sqlite" and _sqlite_rounds(source, target):
        return Verdict(
            Fit.LOSSY,
            target,
            reason=(
                "SQLite's NUMERIC affinity turns a decimal into a double, which keeps 15 to 17 "
                "significant digits"
            ),
        )
    if dialect == "sqlite" or source.family is not target.family:
        return Verdict(Fit.HOLDS, target)
    widened = _widened(source, target, dialect, in_key=in_key)
    if widened is None or _same_type(widened, target.type, dialect):
        return Verdict(Fit.HOLDS, target)
    return Verdict(Fit.WIDEN, target, widened=widened)


def _sqlite_rounds(source: ColumnInfo, target: ColumnInfo) -> bool:
    """Would a SQLite target column round the source's decimals (schema/sqlite_decimal.py)?
    Not a DECIMAL_TEXT or a text column, which keep them as text."""
    if source.family is not Family.DECIMAL or target.family is not Family.DECIMAL:
        return False
    from highmark.schema import sqlite_decimal

    if isinstance(target.type, sqlite_decimal.DecimalText):
        return False
    precision, _ = _numeric(source)
    return sqlite_decimal.needs_text(precision, source.dialect, source.type)


def _lossy_reason(source: ColumnInfo, target: ColumnInfo) -> str:
    kind = _WORDS.get(target.family, str(target.family))
    article = "an" if kind[0].lower() in "aeiou" else "a"
    return (
        f"{_WORDS.get(source.family, 'its')} values cannot be stored in {article} {kind} "
        "column without loss"
    )


def _widened(
    source: ColumnInfo, target: ColumnInfo, dialect: str, *, in_key: bool
) -> sqltypes.TypeEngine[Any] | None:
    """The type ``target`` must become to hold ``source`` (same family), or None if it does."""
    family = source.family
    if family is Family.INTEGER:
        wider = target_type(source, dialect, in_key=in_key)
        capacity = _integer_bytes(target)
        if _integer_bytes(source) <= capacity or _type_bytes(wider) <= capacity:
            return None
        return wider
    if family is Family.STRING:
        wanted, held = _text_length(source), _text_length(target)
        if held is None or (wanted is not None and wanted <= held):
            return None
        return target_type(source, dialect, in_key=in_key)
    if family is Family.DECIMAL:
        return _wider_decimal(source, target, dialect)
    if family is Family.TIMESTAMP:
        wanted, held = _fraction_digits(source), _fraction_digits(target)
        if gains_a_zone(source, target, dialect):
            return _timestamp_type(target, dialect, max(wanted, held), aware=True)
        if wanted <= held:
            return None
        return _timestamp_type(target, dialect, wanted)
    return None


def gains_a_zone(source: ColumnInfo, target: ColumnInfo, dialect: str) -> bool:
    """A PostgreSQL ``timestamp`` target fed from a ``timestamptz`` source (typically a source
    column changed from one to the other): widened to ``timestamptz``, its values read as the
    wall times highmark wrote in the target connection's zone, so every instant is kept. MySQL
    has no wider type (its TIMESTAMP ends in 2038) and SQLite keeps text: their columns stay."""
    return (
        dialect == "postgresql"
        and source.timestamp_kind is TimestampKind.AWARE
        and target.timestamp_kind is TimestampKind.LOCAL_NAIVE
    )


def _integer_bytes(column: ColumnInfo) -> int:
    if column.dialect == "sqlite" and not isinstance(column.type, sqltypes.SmallInteger):
        return 8  # SQLite's INTEGER is 64-bit (a target made from it is BIGINT)
    return _type_bytes(column.type)


def _type_bytes(type_: sqltypes.TypeEngine[Any]) -> int:
    named = _INTEGER_BYTES.get(type(type_).__name__.upper())
    if named is not None:
        return named
    if isinstance(type_, sqltypes.BigInteger):
        return 8
    if isinstance(type_, sqltypes.SmallInteger):
        return 2
    return 4


def _text_length(column: ColumnInfo) -> int | None:
    """Characters a text column holds (None: unlimited)."""
    if type(column.type).__name__.upper() in _UNLIMITED_TEXT:
        return None
    length = getattr(column.type, "length", None)
    return length if isinstance(length, int) else None


def _wider_decimal(
    source: ColumnInfo, target: ColumnInfo, dialect: str
) -> sqltypes.TypeEngine[Any] | None:
    s_precision, s_scale = _numeric(source)
    t_precision, t_scale = _numeric(target)
    if s_precision is None or t_precision is None:
        return None  # unbounded on one side: highmark cannot say more than the database
    digits = max(s_precision - s_scale, t_precision - t_scale)
    scale = max(s_scale, t_scale)
    if digits <= t_precision - t_scale and scale <= t_scale:
        return None
    return sqltypes.Numeric(digits + scale, scale)


def _numeric(column: ColumnInfo) -> tuple[int | None, int]:
    precision = getattr(column.type, "precision", None)
    scale = getattr(column.type, "scale", None)
    return (precision if isinstance(precision, int) else None), (
        scale if isinstance(scale, int) else 0
    )


def _fraction_digits(column: ColumnInfo) -> int:
    """Fractional-second digits a timestamp column keeps (each database's default when unsaid)."""
    if column.precision is not None:
        return column.precision
    return 0 if column.dialect == "mysql" else 6


def _timestamp_type(
    target: ColumnInfo, dialect: str, digits: int, *, aware: bool = False
) -> sqltypes.TypeEngine[Any]:
    """A timestamp type of the target's own kind (or ``aware``), with ``digits`` fractional
    digits."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        aware = aware or target.timestamp_kind is TimestampKind.AWARE
        return postgresql.TIMESTAMP(timezone=aware, precision=digits)
    from sqlalchemy.dialects import mysql

    if target.timestamp_kind is TimestampKind.UTC_NAIVE:
        return mysql.TIMESTAMP(fsp=digits)
    return mysql.DATETIME(fsp=digits)


def _same_type(a: sqltypes.TypeEngine[Any], b: sqltypes.TypeEngine[Any], dialect: str) -> bool:
    from highmark.schema.ddl import compile_type

    return compile_type(a, dialect).upper() == compile_type(b, dialect).upper()
