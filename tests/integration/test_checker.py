"""`highmark check` against well-made and badly made source tables on every database."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

GOOD = {
    "postgresql": [
        "CREATE TABLE orders (id bigint PRIMARY KEY, note text,"
        " updated_at timestamptz NOT NULL DEFAULT now(), deleted_at timestamptz)",
        "CREATE INDEX idx_orders_updated ON orders (updated_at, id)",
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$",
        "CREATE TRIGGER trg_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch()",
    ],
    "mysql": [
        "CREATE TABLE orders (id bigint PRIMARY KEY, note text, updated_at datetime(6) NOT NULL"
        " DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), deleted_at datetime(6))",
        "CREATE INDEX idx_orders_updated ON orders (updated_at, id)",
    ],
    "sqlite": [
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT, updated_at TIMESTAMP NOT NULL"
        " DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')), deleted_at TIMESTAMP)",
        "CREATE INDEX idx_orders_updated ON orders (updated_at, id)",
        "CREATE TRIGGER trg_touch AFTER UPDATE ON orders FOR EACH ROW"
        " WHEN NEW.updated_at IS OLD.updated_at BEGIN UPDATE orders"
        " SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE rowid = NEW.rowid; END",
    ],
}
BAD = {
    "postgresql": [
        "CREATE TABLE orders (id bigint, note text, updated_at timestamptz, deleted_at timestamptz)"
    ],
    "mysql": [
        "CREATE TABLE orders (id bigint, note text, updated_at datetime(6), deleted_at datetime(6))"
    ],
    "sqlite": [
        "CREATE TABLE orders (id INTEGER, note TEXT, updated_at TIMESTAMP, deleted_at TIMESTAMP)"
    ],
}


def _check(project: Path, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    as_json = subprocess.run(
        [sys.executable, "-m", "highmark", "--project", str(project), "check", "--json", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    plain = subprocess.run(
        [sys.executable, "-m", "highmark", "--project", str(project), "check", "--sql", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert as_json.returncode == plain.returncode, plain.stderr
    return as_json.returncode, json.loads(as_json.stdout), plain.stdout


def _setup(
    db_url: str, backend: str, statements: list[str], engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> tuple[Engine, Path]:  # fmt: skip
    engine = engine_for(db_url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    job = {
        "load_type": "incremental",
        "source": {"connection": "db", "table": "orders"},
        "target": {"connection": "db", "table": "orders_copy"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "soft_delete": {"column": "deleted_at"},
    }
    return engine, write_project(connections={"db": db_url}, jobs={"sync": job})


def test_a_well_made_table_passes(
    db_url: str,
    backend: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    _, project = _setup(db_url, backend, GOOD[backend], engine_for, write_project)
    code, findings, plain = _check(project)
    levels = {f["check"]: f["level"] for f in findings}
    assert code == 0, findings
    for check in (
        "source table", "primary key", "watermark not null", "watermark index",
        "tiebreaker unique", "watermark default", "watermark bumped on update",
        "soft delete covered", "upper bound", "null watermarks",
    ):  # fmt: skip
        assert levels[check] == "pass", (check, findings)
    assert "nothing to fix" in plain


def test_a_badly_made_table_fails_with_the_ddl_that_fixes_it(
    db_url: str,
    backend: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    engine, project = _setup(db_url, backend, BAD[backend], engine_for, write_project)
    with engine.begin() as conn:  # a NULL watermark and a duplicate tiebreaker
        conn.execute(text("INSERT INTO orders (id, note, updated_at) VALUES (1, 'a', NULL)"))
        conn.execute(text("INSERT INTO orders (id, note, updated_at) VALUES (1, 'b', NULL)"))
    code, findings, plain = _check(project, "sync")
    levels = {f["check"]: f["level"] for f in findings}
    assert code == 1
    assert levels["primary key"] == "fail"
    assert levels["watermark index"] == "fail"
    assert levels["tiebreaker unique"] == "fail"
    assert levels["null watermarks"] == "fail"
    assert levels["watermark not null"] == "warn"
    assert levels["watermark default"] == "warn"
    assert levels["watermark bumped on update"] == "warn"
    assert "CREATE INDEX idx_orders_updated_at ON orders (updated_at, id);" in plain
    assert "CREATE UNIQUE INDEX uq_orders_id ON orders (id);" in plain
    if backend == "postgresql":
        assert (
            "BEFORE UPDATE ON orders" in plain
            and "ALTER COLUMN updated_at SET DEFAULT now()" in plain
        )
    if backend == "mysql":
        assert "ON UPDATE CURRENT_TIMESTAMP(6)" in plain


def test_the_printed_ddl_fixes_the_table(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine, project = _setup(pg_url, "postgresql", BAD["postgresql"], engine_for, write_project)
    _, _, plain = _check(project)
    ddl = "\n".join(
        line for line in plain.splitlines() if not line.startswith(("┏", "┃", "┡", "│", "└", "--"))
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(ddl)
    code, findings, _ = _check(project)
    assert code == 0, findings
    assert all(f["level"] == "pass" for f in findings), findings
