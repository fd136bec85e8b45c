"""Source rows into canonical Python values, naming the rows that cannot be converted.

A value the source holds but cannot be read as its column's type (timestamp text that is no
timestamp in a SQLite source, a number out of range, JSON that does not parse) makes its row a
bad row, refused with the column, the value and the reason, never a bare ``ValueError`` that fails
the run without saying which row. The other rows of the batch go on; the run decides what to do
with the refused ones (highmark/bad_rows.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import InvalidOperation
from typing import Any

from highmark.models import Refusal, RefusedRow
from highmark.sqltypes import Converter

# What a converter raises on a value it cannot read.
CONVERSION_ERRORS = (ValueError, TypeError, OverflowError, InvalidOperation)


@dataclass(frozen=True)
class Converted:
    """A raw row converted: ``row`` holds every value that converted (the raw value where one
    did not); ``refused`` says why it is a bad row, or is None."""

    row: dict[str, Any]
    refused: RefusedRow | None = None


def convert_row(
    converters: Sequence[tuple[str, Converter | None]], raw: Sequence[Any]
) -> Converted:
    """Convert one raw row (values in the order of ``converters``)."""
    row: dict[str, Any] = {}
    problem: Refusal | None = None
    for (name, convert), value in zip(converters, raw, strict=True):
        if convert is None or value is None:
            row[name] = value
            continue
        try:
            row[name] = convert(value)
        except CONVERSION_ERRORS as exc:
            row[name] = value
            if problem is None:
                problem = unreadable(name, value, exc)
    if problem is None:
        return Converted(row)
    return Converted(row, RefusedRow(row, problem))


def unreadable(name: str, value: Any, exc: Exception) -> Refusal:
    """Why the value of column ``name`` is a bad row, in one line."""
    reason = str(exc) or type(exc).__name__
    return Refusal(f"cannot read column {name} value {value!r}: {reason}", name)
