"""Decimals wider than a double keep every digit in a SQLite target (schema/sqlite_decimal.py).

A PostgreSQL ``numeric(38, 10)``, an unbounded ``numeric`` and a MariaDB ``DECIMAL(65, 30)`` land
in SQLite as ``DECIMAL_TEXT`` columns holding the row path's exact text, on the fast path and on
the row path alike; a ``numeric(12, 2)``, which a double holds, stays ``NUMERIC``. The target,
reflected, is a decimal again, and loads on into another database with every digit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from highmark import Project
from highmark.destinations import ranges
from highmark.models import RunStatus
from highmark.sqlschema import reflect
from highmark.sqltypes import Family
from tests.helpers import copy_job

WIDE = [
    "12345678901234567890123456.0123456789",
    "-0.0000000001",
    "99999999999999999999999999.9999999999",
    "0.1000000000",
    None,
]
DDL = {
    "postgresql": (
        "CREATE TABLE things (id bigint PRIMARY KEY, wide numeric(38, 10), free numeric, "
        "money numeric(12, 2), updated_at timestamptz NOT NULL)"
    ),
    "mysql": (
        "CREATE TABLE things (id BIGINT PRIMARY KEY, wide DECIMAL(38, 10), free DECIMAL(65, 30), "
        "money DECIMAL(12, 2), updated_at DATETIME(6) NOT NULL)"
    ),
}


def _job(source: str, target: str, table: str) -> dict[str, Any]:
    return copy_job(
        source={"connection": source, "table": "things"},
        target={"connection": target, "table": table},
        batch_size=2,
    )


def _source_values(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(text("SELECT id, wide, free, money FROM things ORDER BY id"))
        ]


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_wide_decimals_keep_every_digit_in_sqlite(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = str(request.getfixturevalue("pg_url" if backend == "postgresql" else "mysql_url"))
    source = engine_for(url)
    with source.begin() as conn:
        conn.execute(text(DDL[backend]))
        for i, wide in enumerate(WIDE, start=1):
            conn.execute(
                text(
                    "INSERT INTO things VALUES (:id, :wide, :free, :money, '2024-01-01 00:00:00')"
                ),
                {"id": i, "wide": wide, "free": wide and f"{wide}12345", "money": "1234567890.12"},
            )
    target = tmp_path / "target.db"
    path = write_project(
        connections={
            "src": url,
            "dst": f"sqlite:///{target}",
            "pg": request.getfixturevalue("pg_url"),
        },
        jobs={
            "fast": _job("src", "dst", "fast"),
            "rows": _job("src", "dst", "by_rows"),
            "onward": {
                **_job("dst", "pg", "onward"),
                "source": {"connection": "dst", "table": "fast"},
            },
        },
    )
    project = Project.load(path)

    def load_both() -> None:
        assert project.run("fast").run_status is RunStatus.SUCCESS
        with monkeypatch.context() as rows_only:
            rows_only.setattr(ranges, "range_loader", lambda *args: None)
            assert project.run("rows").run_status is RunStatus.SUCCESS

    load_both()
    with source.begin() as conn:  # a delta: the targets are judged again, and merged into
        conn.execute(
            text(
                "UPDATE things SET wide = :w, updated_at = '2024-01-02 00:00:00' WHERE id IN (1, 5)"
            ),
            {"w": "-98765432109876543210987654.3210987654"},
        )
    load_both()

    expected = _source_values(source)
    with sqlite3.connect(target) as conn:
        declared = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(fast)")}
        assert declared["wide"] == "DECIMAL_TEXT(38, 10)"
        assert declared["free"].startswith("DECIMAL_TEXT")
        assert declared["money"] == "NUMERIC(12, 2)"
        for table in ("fast", "by_rows"):
            stored = conn.execute(
                f"SELECT id, wide, typeof(wide), free, money FROM {table} ORDER BY id"
            ).fetchall()
            assert [(i, w, f, m) for i, w, _, f, m in stored] == [
                (i, w and format(w, "f"), f and format(f, "f"), float(m)) for i, w, f, m in expected
            ], table
            assert {kind for _, w, kind, _, _ in stored if w is not None} == {"text"}

    with create_engine(f"sqlite:///{target}").connect() as conn:
        reflected = reflect(conn, None, "fast")
    assert reflected is not None
    assert reflected.find("wide").family is Family.DECIMAL  # type: ignore[union-attr]

    assert project.run("onward").run_status is RunStatus.SUCCESS
    with engine_for(str(request.getfixturevalue("pg_url"))).connect() as conn:
        onward = [
            tuple(r) for r in conn.execute(text("SELECT id, wide, free FROM onward ORDER BY id"))
        ]
    assert onward == [(i, w, f) for i, w, f, _ in expected]
    assert all(w is None or isinstance(w, Decimal) for _, w, _ in onward)


def test_a_sqlite_target_that_would_round_wide_decimals_is_refused(
    pg_url: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    with engine_for(pg_url).begin() as conn:
        conn.execute(text(DDL["postgresql"]))
        conn.execute(
            text("INSERT INTO things VALUES (1, :w, :w, 1.5, '2024-01-01 00:00:00+00')"),
            {"w": WIDE[0]},
        )
    target = tmp_path / "target.db"
    with sqlite3.connect(target) as conn:  # made by hand, or by an older highmark
        conn.execute(
            "CREATE TABLE things (id INTEGER PRIMARY KEY, wide NUMERIC(38, 10), "
            "free DECIMAL_TEXT, money NUMERIC(12, 2), updated_at DATETIME)"
        )
    path = write_project(
        connections={"src": pg_url, "dst": f"sqlite:///{target}"},
        jobs={"things": _job("src", "dst", "things")},
    )
    run = Project.load(path).run("things")
    assert run.run_status is RunStatus.FAILED
    assert run.error_message is not None
    assert "column wide" in run.error_message and "NUMERIC affinity" in run.error_message
    assert "column free" not in run.error_message  # DECIMAL_TEXT keeps every digit
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM things").fetchone() == (0,)
