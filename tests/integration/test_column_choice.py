"""columns, exclude_columns and mask_columns on SQLite, PostgreSQL and MariaDB: left-out columns
are never read nor created in the target; masked columns hold a keyed hash of the value."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from highmark import Project, RunStatus
from tests.helpers import BASE_TIME

KEY = "mask-key-9f1c2e7b"


def _create_people(engine: Engine) -> None:
    stamp = {"postgresql": "timestamptz", "mysql": "DATETIME(6)", "sqlite": "TIMESTAMP"}
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE people (id BIGINT PRIMARY KEY, name VARCHAR(50), "
                "email VARCHAR(100), phone VARCHAR(30), "
                f"updated_at {stamp[engine.dialect.name]} NOT NULL)"
            )
        )


def _insert(engine: Engine, rows: list[tuple[int, str | None]], seconds: int = 0) -> None:
    with engine.begin() as conn:
        for i, email in rows:
            at = BASE_TIME + timedelta(seconds=seconds + i)
            stamp = (
                at.isoformat()
                if engine.dialect.name == "postgresql"
                else at.replace(tzinfo=None).isoformat(" ")
            )
            conn.execute(
                text(
                    "INSERT INTO people (id, name, email, phone, updated_at) "
                    "VALUES (:i, :n, :e, :p, :t)"
                ),
                {"i": i, "n": f"person {i}", "e": email, "p": f"555-{i:04d}", "t": stamp},
            )


def _job(target: str, **options: Any) -> dict[str, Any]:
    return {
        "load_type": "incremental",
        "source": {"connection": "db", "table": "people"},
        "target": {"connection": "db", "table": target},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp"},
        **options,
    }


def _hash(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _rows(engine: Engine, query: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(query)).all())


def test_columns_exclude_and_mask(
    db_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HM_TEST_MASK_KEY", KEY)
    engine = engine_for(db_url)
    _create_people(engine)
    _insert(engine, [(1, "ann@example.com"), (2, None), (3, "bob@example.com")])
    jobs = {
        "excluded": _job("people_excluded", exclude_columns=["email", "PHONE"]),
        "chosen": _job("people_chosen", columns=["id", "email", "updated_at"]),
        "masked": _job("people_masked", mask_columns=["email"], mask_key="${HM_TEST_MASK_KEY}"),
        "typo": _job("people_typo", columns=["id", "e_mail", "updated_at"]),
    }
    path = write_project(control=db_url, connections={"db": db_url}, jobs=jobs)
    project = Project.load(path)

    for job in ("excluded", "chosen", "masked"):
        run = project.run(job)
        assert run.run_status is RunStatus.SUCCESS, run.error_message
        assert run.rows_written == 3

    columns = {t: [c["name"] for c in inspect(engine).get_columns(t)] for t in (
        "people_excluded", "people_chosen", "people_masked")}  # fmt: skip
    assert columns["people_excluded"] == ["id", "name", "updated_at"]
    assert columns["people_chosen"] == ["id", "email", "updated_at"]
    assert columns["people_masked"] == ["id", "name", "email", "phone", "updated_at"]
    masked = _rows(engine, "SELECT id, name, email FROM people_masked ORDER BY id")
    assert masked == [
        (1, "person 1", _hash("ann@example.com")),
        (2, "person 2", None),
        (3, "person 3", _hash("bob@example.com")),
    ]
    email = next(c for c in inspect(engine).get_columns("people_masked") if c["name"] == "email")
    assert getattr(email["type"], "length", None) == 64

    # A changed value is masked again; the hash is stable for the same value and key.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM people WHERE id = 3"))
    _insert(engine, [(3, "ann@example.com")], seconds=100)
    assert project.run("masked").rows_updated == 1
    assert _rows(engine, "SELECT email FROM people_masked WHERE id = 3") == [
        (_hash("ann@example.com"),)
    ]

    # A full refresh reads every row again, masked the same way: nothing changes.
    refreshed = project.run("masked", full_refresh=True)
    assert (refreshed.rows_read, refreshed.rows_updated) == (3, 0)

    typo = project.run("typo")
    assert typo.run_status is RunStatus.FAILED
    assert typo.error_message == ("columns: column 'e_mail' does not exist in source table people")
    assert not inspect(engine).has_table("people_typo")
    for run in project.runs():
        assert KEY not in f"{run.error_message} {run.notes} {run.error_details}"


def test_a_left_out_column_is_never_read(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    _create_people(engine)
    _insert(engine, [(1, "ann@example.com"), (2, "bob@example.com")])
    with engine.begin() as conn:  # reading `boom` fails: division by zero
        conn.execute(text("CREATE VIEW people_v AS SELECT *, 1 / (id - id) AS boom FROM people"))
    job = {**_job("people_copy", exclude_columns=["boom"]), "source": {
        "connection": "db", "table": "people_v"}}  # fmt: skip
    path = write_project(
        control=pg_url,
        connections={"db": pg_url},
        jobs={
            "left_out": job,
            "read": {
                **job,
                "exclude_columns": [],
                "target": {"connection": "db", "table": "people_read"},
            },
        },
    )
    project = Project.load(path)

    read = project.run("read")
    assert read.run_status is RunStatus.FAILED
    assert "division by zero" in (read.error_message or "")
    left_out = project.run("left_out")
    assert left_out.run_status is RunStatus.SUCCESS, left_out.error_message
    assert left_out.rows_written == 2
