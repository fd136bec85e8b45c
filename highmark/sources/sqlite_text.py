"""Comparing SQLite timestamps stored as text, in the text's own shape.

SQLite keeps timestamps as ISO text and compares them as strings, so a bound must be written the
way the column writes its values: the same separator (`` `` or ``T``), the same suffix (``Z``,
``+00:00`` or none). Text without a suffix may drop trailing zeros of the fraction
(``10:00:00`` and ``10:00:00.000000`` are one instant), so one instant is the string range
``[shortest form, six-digit form]``:

* ``col > T``  is  ``col > longest(T)``
* ``col = T``  is  ``col BETWEEN shortest(T) AND longest(T)``
* ``col <= T`` is  ``col <= longest(T)``;  ``col >= T`` is ``col >= shortest(T)``

Values stored as numbers are Unix epoch seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, bindparam, func, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.types import NullType

_UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class SqliteTextTimestamps:
    separator: str = " "
    suffix: str = ""
    digits: int | None = None  # fraction digits of the newest value; None: no values yet
    epoch: bool = False
    zone: ZoneInfo = _UTC

    @classmethod
    def detect(
        cls, conn: Connection, table: TableClause, column: str, zone: ZoneInfo
    ) -> SqliteTextTimestamps:
        col = table.c[column]
        row = conn.execute(
            select(col, func.typeof(col)).where(col.is_not(None)).order_by(col.desc()).limit(1)
        ).first()
        if row is None:
            return cls(zone=zone)
        value, kind = row
        if kind in ("integer", "real"):
            return cls(epoch=True, zone=zone)
        text = str(value).strip()
        separator = "T" if len(text) > 10 and text[10] in "Tt" else " "
        rest = text[19:]
        digits = 0
        if rest.startswith("."):
            fraction = rest[1:]
            digits = len(fraction) - len(fraction.lstrip("0123456789"))
            rest = fraction[digits:]
        # digits is the precision the column writes: the bound is truncated to it, so that a row
        # written later within the same second (or millisecond) can never sit below the mark.
        return cls(separator=separator, suffix=rest, digits=digits, zone=zone)

    def _local(self, value: datetime) -> datetime:
        if self.suffix:
            offset = datetime.fromisoformat("2000-01-01T00:00:00" + self.suffix.upper()).tzinfo
            return value.astimezone(offset)
        return value.astimezone(self.zone)

    def longest(self, value: datetime) -> str:
        local = self._local(value)
        base = local.strftime(f"%Y-%m-%d{self.separator}%H:%M:%S")
        if self.suffix:
            digits = self.digits or 0
            fraction = f"{local.microsecond:06d}"[:digits]
            return base + (f".{fraction}" if digits else "") + self.suffix
        return f"{base}.{local.microsecond:06d}"

    def shortest(self, value: datetime) -> str:
        if self.suffix:
            return self.longest(value)
        local = self._local(value)
        base = local.strftime(f"%Y-%m-%d{self.separator}%H:%M:%S")
        fraction = f"{local.microsecond:06d}".rstrip("0")
        return base + (f".{fraction}" if fraction else "")

    def comparator(self) -> Callable[[Any, str, Any], ColumnElement[bool]]:
        def compare(col: Any, op: str, value: Any) -> ColumnElement[bool]:
            if self.epoch:
                number = value.astimezone(UTC).timestamp()
                return _apply(col, op, number)
            if op == ">":
                return col > _raw(self.longest(value))  # type: ignore[no-any-return]
            if op == ">=":
                return col >= _raw(self.shortest(value))  # type: ignore[no-any-return]
            if op == "<=":
                return col <= _raw(self.longest(value))  # type: ignore[no-any-return]
            if op == "=":
                return and_(col >= _raw(self.shortest(value)), col <= _raw(self.longest(value)))
            raise ValueError(op)

        return compare


def _raw(value: Any) -> Any:
    return bindparam(None, value, type_=NullType())


def _apply(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    return {  # type: ignore[no-any-return]
        ">": lambda: col > _raw(value),
        ">=": lambda: col >= _raw(value),
        "<=": lambda: col <= _raw(value),
        "=": lambda: col == _raw(value),
    }[op]()
