"""What a fast path from a SQLite source does to a column's values before the target takes them.

sqlite3 hands back whatever a row holds, whatever the column's declared type: a fast path passes
a value as it is where the target reads it as the row path would write it, and calls the row
path's converter on any other (postgres_from_sqlite.py, mariadb_from_sqlite.py). Calling a fix
per value costs a Python call per value; almost every chunk needs none. So each fix comes with
a test of a whole chunk's column, made of calls that loop in C (the set of the values' exact
types, a regular expression mapped over them), which says that the fix would return each value
as it is: such a chunk is written with no fix at all. A chunk with any value to fix is fixed
value by value. The chunk test may be stricter than the fix (exact types where the fix asks
``isinstance``), never looser: tests/unit/test_column_fixes.py checks the pairs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

Row = tuple[Any, ...]
NONE_TYPE = type(None)


@dataclass(frozen=True)
class ColumnFix:
    index: int  # the column's place in a source row
    value: Callable[[Any], Any]  # one value, as the target takes it
    # True when ``value`` would return each of a chunk's values of this column as it is;
    # None when it may change any value (a conversion the target needs for every value).
    unchanged: Callable[[Sequence[Row]], bool] | None


def fixed(fixes: Sequence[ColumnFix], chunk: Sequence[Row]) -> Sequence[Sequence[Any]]:
    """The chunk's rows as the target takes them: the chunk itself when no fix would change a
    value of it (each fix's chunk test), else each row with every fix applied to its value."""
    if all(f.unchanged is not None and f.unchanged(chunk) for f in fixes):
        return chunk
    rows = []
    for row in chunk:
        values = list(row)
        for f in fixes:
            values[f.index] = f.value(values[f.index])
        rows.append(values)
    return rows


def types_within(index: int, kept: tuple[type, ...]) -> Callable[[Sequence[Row]], bool]:
    """Every value of the column is None or of one of the ``kept`` types exactly."""
    get = itemgetter(index)
    allowed = {*kept, NONE_TYPE}
    return lambda chunk: set(map(type, map(get, chunk))) <= allowed


def texts_matching(index: int, form: re.Pattern[str]) -> Callable[[Sequence[Row]], bool]:
    """Every value of the column is None or a ``str`` that ``form`` matches whole."""
    get = itemgetter(index)
    whole = form.fullmatch

    def test(chunk: Sequence[Row]) -> bool:
        values = [v for v in map(get, chunk) if v is not None]  # not filter(None): "" counts
        return set(map(type, values)) <= {str} and all(map(whole, values))

    return test
