"""Which driver errors are a row's fault (bisected) and which are the run's (retried), and what
a refusal names: real exceptions of the drivers, as they raise them."""

from __future__ import annotations

import sqlite3

import pymysql
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from highmark.destinations.refusal import describe, is_data_error
from highmark.errors import DestinationError


def _wrapped(orig: Exception) -> Exception:
    """``orig`` as a destination raises it: a driver's error translated, Python's own as it is."""
    if isinstance(orig, OverflowError):
        return orig
    cls = IntegrityError if isinstance(orig, sqlite3.IntegrityError) else OperationalError
    try:
        try:
            raise cls("INSERT …", {}, orig)
        except Exception as exc:
            raise DestinationError("cannot write target t on db: …") from exc
    except DestinationError as translated:
        return translated


@pytest.mark.parametrize(
    ("orig", "data"),
    [
        (sqlite3.IntegrityError("CHECK constraint failed: amount_not_negative"), True),
        (sqlite3.IntegrityError("NOT NULL constraint failed: orders.customer"), True),
        (sqlite3.OperationalError("database is locked"), False),
        (pymysql.err.OperationalError(4025, "CONSTRAINT `c` failed for `db`.`t`"), True),
        (pymysql.err.DataError(1406, "Data too long for column 'customer' at row 3"), True),
        (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), False),
        (pymysql.err.OperationalError(1213, "Deadlock found"), False),
        (pymysql.err.OperationalError(2013, "Lost connection to MySQL server"), False),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), True),
    ],
)
def test_data_errors_are_bisected_the_others_are_not(orig: Exception, data: bool) -> None:
    assert is_data_error(_wrapped(orig)) is data


def test_a_refusal_names_the_column_or_the_constraint() -> None:
    too_long = describe(
        _wrapped(pymysql.err.DataError(1406, "Data too long for column 'customer' at row 3"))
    )
    assert too_long.column == "customer"
    check = describe(
        _wrapped(pymysql.err.OperationalError(4025, "CONSTRAINT `amount_ok` failed for `db`.`t`"))
    )
    assert check.constraint == "amount_ok"
    not_null = describe(
        _wrapped(sqlite3.IntegrityError("NOT NULL constraint failed: orders.customer"))
    )
    assert (not_null.column, not_null.message) == (
        "customer",
        "NOT NULL constraint failed: orders.customer",
    )
    sqlite_check = describe(_wrapped(sqlite3.IntegrityError("CHECK constraint failed: amount_ok")))
    assert sqlite_check.constraint == "amount_ok"
