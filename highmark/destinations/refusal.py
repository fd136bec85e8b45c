"""What a database says when it refuses a row: its one-line message, and the column and the
constraint at fault when it names them.

PostgreSQL names them in the error's diagnostics; MySQL/MariaDB and SQLite only in the message
text, in a handful of fixed shapes matched below.
"""

from __future__ import annotations

import re
from typing import Any

from highmark.errors import HighmarkError, ValueRefused, is_data_db_error, one_line
from highmark.models import Refusal
from highmark.redact import scrub

# MySQL/MariaDB and SQLite messages that name a column or a constraint.
_COLUMN_PATTERNS = (
    re.compile(r"for column [`'\"]?(?:[^`'\" ]+[`'\"]?\.[`'\"]?)*([^`'\" ]+)[`'\"]? at row"),
    re.compile(r"Column '([^']+)' cannot be null"),
    re.compile(r"Field '([^']+)' doesn't have a default"),
    re.compile(r"NOT NULL constraint failed: (?:[^ .]+\.)?([^ .]+)$"),
    re.compile(r"cannot store \w+ value in \w+ column (?:[^ .]+\.)?([^ .]+)$"),
)
_CONSTRAINT_PATTERNS = (
    re.compile(r"CONSTRAINT [`'\"]([^`'\"]+)[`'\"] failed"),  # MariaDB
    re.compile(r"Check constraint '([^']+)' is violated"),  # MySQL
    re.compile(r"for key '(?:[^'.]+\.)?([^']+)'"),  # duplicate entry
    re.compile(r"CHECK constraint failed: (.+)$"),  # SQLite
    re.compile(r"FOREIGN KEY \(`([^`]+)`\)"),
)


def root_cause(exc: BaseException) -> BaseException:
    """The foreign error under highmark's translation of it (``raise … from exc``)."""
    while isinstance(exc, HighmarkError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def is_data_error(exc: BaseException) -> bool:
    """Did the target refuse the values of a row, not fail for a reason of its own?"""
    return is_data_db_error(root_cause(exc))


def describe(exc: BaseException) -> Refusal:
    """The refusal ``exc`` (raised by a write of one row) reports."""
    cause = root_cause(exc)
    orig: Any = getattr(cause, "orig", None) or cause
    message = scrub(one_line(str(orig)) or type(orig).__name__)
    diag = getattr(orig, "diag", None)
    column = getattr(diag, "column_name", None) if diag is not None else None
    if isinstance(orig, ValueRefused):
        column = orig.column
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    if column is None:
        column = _first_match(_COLUMN_PATTERNS, message)
    if constraint is None:
        constraint = _first_match(_CONSTRAINT_PATTERNS, message)
    return Refusal(message=message, column=column, constraint=constraint)


def _first_match(patterns: tuple[re.Pattern[str], ...], message: str) -> str | None:
    for pattern in patterns:
        found = pattern.search(message)
        if found:
            return found.group(1)
    return None


_COPY_LINE = re.compile(r"^COPY [^,]+, line (\d+)")


def row_hint(exc: BaseException) -> int | None:
    """Which row (0-based) of the rows written a refusal is about, when the database says so:
    PostgreSQL names the line of a COPY that failed. None when it does not say."""
    cause = root_cause(exc)
    orig: Any = getattr(cause, "orig", None) or cause
    context = getattr(getattr(orig, "diag", None), "context", None)
    found = _COPY_LINE.match(context) if isinstance(context, str) else None
    return int(found.group(1)) - 1 if found else None
