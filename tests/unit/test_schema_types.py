"""Which target columns hold a source column's values, which can be widened to, and which would
lose data (highmark/schema/types.py), across SQLite, PostgreSQL and MySQL/MariaDB types."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql, postgresql

from highmark.schema.ddl import compile_type
from highmark.schema.types import Fit, judge
from highmark.sqltypes import ColumnInfo, Family, TimestampKind, column_info


def col(type_: sqltypes.TypeEngine[Any], dialect: str) -> ColumnInfo:
    return column_info("c", type_, True, dialect)


CASES = [
    # (source type, its dialect, target type, its dialect, fit, widened type or None)
    (sqltypes.Integer(), "postgresql", sqltypes.BigInteger(), "postgresql", Fit.HOLDS, None),
    (sqltypes.BigInteger(), "postgresql", sqltypes.Integer(), "postgresql", Fit.WIDEN, "BIGINT"),
    (sqltypes.BigInteger(), "mysql", mysql.INTEGER(display_width=11), "mysql", Fit.WIDEN,
     "BIGINT"),
    (sqltypes.SmallInteger(), "sqlite", mysql.SMALLINT(display_width=6), "mysql", Fit.HOLDS, None),
    (sqltypes.Integer(), "sqlite", sqltypes.Integer(), "postgresql", Fit.WIDEN, "BIGINT"),
    (sqltypes.String(100), "postgresql", sqltypes.String(20), "postgresql", Fit.WIDEN,
     "VARCHAR(100)"),
    (sqltypes.Text(), "postgresql", sqltypes.String(20), "postgresql", Fit.WIDEN, "TEXT"),
    (sqltypes.String(100), "postgresql", mysql.TEXT(), "mysql", Fit.HOLDS, None),
    (sqltypes.String(100), "postgresql", sqltypes.String(20), "sqlite", Fit.HOLDS, None),
    (sqltypes.Numeric(12, 4), "postgresql", sqltypes.Numeric(10, 2), "postgresql", Fit.WIDEN,
     "NUMERIC(12, 4)"),
    (sqltypes.Numeric(10, 4), "postgresql", sqltypes.Numeric(12, 2), "postgresql", Fit.WIDEN,
     "NUMERIC(14, 4)"),
    (sqltypes.Numeric(8, 2), "postgresql", sqltypes.Numeric(12, 4), "postgresql", Fit.HOLDS, None),
    (postgresql.TIMESTAMP(timezone=True), "postgresql", mysql.DATETIME(), "mysql", Fit.WIDEN,
     "DATETIME(fsp=6)"),
    (mysql.DATETIME(fsp=6), "mysql", postgresql.TIMESTAMP(timezone=True, precision=3),
     "postgresql", Fit.WIDEN, "TIMESTAMP(6) WITH TIME ZONE"),
    (postgresql.TIMESTAMP(timezone=True), "postgresql", postgresql.TIMESTAMP(), "postgresql",
     Fit.WIDEN, "TIMESTAMP(6) WITH TIME ZONE"),
    (mysql.DATETIME(fsp=6), "mysql", postgresql.TIMESTAMP(), "postgresql", Fit.HOLDS, None),
    (postgresql.TIMESTAMP(timezone=True), "postgresql", mysql.DATETIME(fsp=6), "mysql",
     Fit.HOLDS, None),
    (sqltypes.Text(), "postgresql", sqltypes.Integer(), "postgresql", Fit.LOSSY, None),
    (sqltypes.Numeric(8, 2), "mysql", sqltypes.Integer(), "sqlite", Fit.LOSSY, None),
    (sqltypes.Boolean(), "postgresql", sqltypes.Integer(), "sqlite", Fit.HOLDS, None),
    (sqltypes.JSON(), "postgresql", sqltypes.Text(), "sqlite", Fit.HOLDS, None),
    (sqltypes.Date(), "postgresql", sqltypes.Text(), "sqlite", Fit.HOLDS, None),
    (sqltypes.DateTime(), "sqlite", sqltypes.Text(), "sqlite", Fit.HOLDS, None),
    (sqltypes.DateTime(), "sqlite", sqltypes.DateTime(), "sqlite", Fit.HOLDS, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("source", "s_dialect", "target", "t_dialect", "fit", "widened"),
    CASES,
    ids=[f"{c[0]!r}@{c[1]}->{c[2]!r}@{c[3]}" for c in CASES],
)
def test_judge(
    source: sqltypes.TypeEngine[Any],
    s_dialect: str,
    target: sqltypes.TypeEngine[Any],
    t_dialect: str,
    fit: Fit,
    widened: str | None,
) -> None:
    verdict = judge(col(source, s_dialect), col(target, t_dialect), t_dialect, in_key=False)
    assert verdict.fit is fit
    if widened is None:
        assert verdict.widened is None
    else:
        assert verdict.widened is not None
        found = compile_type(verdict.widened, t_dialect)
        assert found.replace(" ", "") == widened.replace(" ", "").replace("fsp=", "")


def test_a_sqlite_text_column_takes_timestamps_as_sqlite_text() -> None:
    source = col(postgresql.TIMESTAMP(timezone=True), "postgresql")
    verdict = judge(source, col(sqltypes.Text(), "sqlite"), "sqlite", in_key=False)
    assert verdict.fit is Fit.HOLDS
    assert verdict.target.family is Family.TIMESTAMP
    assert verdict.target.timestamp_kind is TimestampKind.SQLITE_TEXT


def test_a_lossy_verdict_says_why() -> None:
    verdict = judge(
        col(sqltypes.Text(), "postgresql"), col(sqltypes.Integer(), "mysql"), "mysql", in_key=False
    )
    assert verdict.reason == "text values cannot be stored in an integer column without loss"
