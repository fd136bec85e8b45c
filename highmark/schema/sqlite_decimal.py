"""Decimals that SQLite keeps exactly: ``DECIMAL_TEXT(p, s)`` columns.

SQLite has no decimal type. A column declared ``NUMERIC`` or ``DECIMAL`` has NUMERIC affinity,
which turns every decimal text into an INTEGER or a REAL, a double: 17 significant digits at
most, rounded (``12345678901234567.8901234567`` is stored as ``12345678901234568``). A decimal
of more than 15 digits loaded into such a column would silently lose its last digits.

A target highmark creates on SQLite for such a decimal declares ``DECIMAL_TEXT(p, s)`` instead:
the name holds ``TEXT``, so SQLite gives the column TEXT affinity and keeps the row path's text
(the Decimal in positional notation) as it is; and highmark registers the name with
SQLAlchemy's SQLite dialect, so that reflecting the table gives a decimal again (GeoAlchemy2
registers its types the same way).
Reading such a column gives the text, which ``sqltypes.read_converter`` turns into a Decimal.

Imported only where SQLite is at hand (``sqlalchemy.dialects.sqlite`` is not free to import).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy.dialects.sqlite import base
from sqlalchemy.ext.compiler import compiles

from highmark.sqltypes import decimal_text

NAME = "DECIMAL_TEXT"
# Digits a double always gives back: a decimal of at most this precision is safe in NUMERIC.
EXACT_IN_A_DOUBLE = 15


class DecimalText(sqltypes.Numeric[Decimal]):
    """A decimal as exact text in SQLite; reads and binds text, never a float."""

    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        def text(value: Any) -> Any:
            if isinstance(value, Decimal):
                return decimal_text(value)
            return value if value is None else str(value)

        return text

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return lambda value: value if value is None else Decimal(str(value))


@compiles(DecimalText, "sqlite")
def _declare(type_: DecimalText, compiler: Any, **kw: Any) -> str:
    if type_.precision is None:
        return NAME
    if type_.scale is None:
        return f"{NAME}({type_.precision})"
    return f"{NAME}({type_.precision}, {type_.scale})"


@compiles(DecimalText)
def _declare_elsewhere(type_: DecimalText, compiler: Any, **kw: Any) -> str:
    return str(compiler.visit_NUMERIC(type_, **kw))


def needs_text(precision: int | None, source_dialect: str, source_type: Any) -> bool:
    """Does a decimal of a source column need a DECIMAL_TEXT target on SQLite? Not when a double
    holds every value exactly: a declared precision of 15 digits or fewer, or a SQLite source
    whose NUMERIC affinity already made its values integers and doubles."""
    if isinstance(source_type, DecimalText):
        return True
    if source_dialect == "sqlite":
        return False
    return precision is None or precision > EXACT_IN_A_DOUBLE


base.ischema_names.setdefault(NAME, DecimalText)
