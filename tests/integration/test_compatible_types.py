"""A target created by hand is accepted whenever its columns hold the source's values without
loss: SQLite TEXT/DATETIME/TIMESTAMP for timestamps, INTEGER for booleans, TEXT for JSON, wider
numeric and text types; a refusal says why in a user's terms."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from highmark import Project, RunStatus

SOURCE_DDL = {
    "postgresql": """CREATE TABLE events (id BIGINT PRIMARY KEY, ok BOOLEAN, doc JSONB,
        amount NUMERIC(8, 2), label VARCHAR(10), happened DATE, created_at TIMESTAMP,
        updated_at TIMESTAMPTZ NOT NULL)""",
    "mysql": """CREATE TABLE events (id BIGINT PRIMARY KEY, ok BOOLEAN, doc JSON,
        amount DECIMAL(8, 2), label VARCHAR(10), happened DATE, created_at DATETIME(6),
        updated_at DATETIME(6) NOT NULL)""",
    "sqlite": """CREATE TABLE events (id BIGINT PRIMARY KEY, ok BOOLEAN, doc JSON,
        amount NUMERIC(8, 2), label VARCHAR(10), happened DATE, created_at DATETIME,
        updated_at TIMESTAMP NOT NULL)""",
}
# The usual hand-made SQLite table: time as TEXT, booleans as INTEGER, JSON as TEXT, a numeric
# and a text type wider than the source's.
TARGET_DDL = """CREATE TABLE events_copy (id INTEGER PRIMARY KEY, ok INTEGER, doc TEXT,
    amount NUMERIC(12, 4), label TEXT, happened TEXT, created_at DATETIME, updated_at TEXT)"""


def _stamp(engine: Engine, value: datetime) -> str:
    if engine.dialect.name == "postgresql":
        return value.isoformat()
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


def _insert(engine: Engine, i: int, at: datetime, ok: bool) -> None:
    row: dict[str, Any] = {
        "id": i, "ok": ok, "doc": json.dumps({"n": i, "tags": ["a"]}), "amount": f"{i}.25",
        "label": f"l{i}", "happened": "2024-05-06", "created": "2024-01-02 03:04:05",
        "at": _stamp(engine, at),
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO events (id, ok, doc, amount, label, happened, created_at, updated_at)"
                " VALUES (:id, :ok, :doc, :amount, :label, :happened, :created, :at)"
            ),
            row,
        )


def test_a_hand_made_sqlite_target_with_text_timestamps_is_accepted(
    db_url: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    source = engine_for(db_url)
    with source.begin() as conn:
        conn.execute(text(SOURCE_DDL[source.dialect.name]))
    first = datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    for i in range(1, 4):
        _insert(source, i, first.replace(second=i), ok=i % 2 == 0)
    target_url = f"sqlite:///{tmp_path / 'hand_made.db'}"
    target = engine_for(target_url)
    with target.begin() as conn:
        conn.execute(text(TARGET_DDL))
    job = {
        "load_type": "incremental",
        "source": {"connection": "src", "table": "events"},
        "target": {"connection": "dst", "table": "events_copy"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "schema_changes": "freeze",  # accepted as it is: nothing to change
    }
    path = write_project(
        control=target_url, connections={"src": db_url, "dst": target_url}, jobs={"events": job}
    )
    project = Project.load(path)

    run = project.run("events")

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.rows_written == 3
    with target.connect() as conn:
        rows = conn.execute(text("SELECT * FROM events_copy ORDER BY id")).all()
    assert [r.ok for r in rows] == [0, 1, 0]
    assert json.loads(rows[0].doc) == {"n": 1, "tags": ["a"]}
    assert rows[1].updated_at == "2024-03-01 10:00:02.123456"  # highmark's SQLite form
    assert rows[1].happened == "2024-05-06"
    assert rows[1].created_at.startswith("2024-01-02 03:04:05")
    assert str(rows[1].amount).startswith("2.25")

    # An update flows through the version guard, which compares the TEXT timestamps.
    with source.begin() as conn:
        conn.execute(
            text("UPDATE events SET label = 'changed', updated_at = :t WHERE id = 1"),
            {"t": _stamp(source, first.replace(minute=30))},
        )
    again = project.run("events")
    assert again.run_status is RunStatus.SUCCESS, again.error_message
    assert (again.rows_read, again.rows_updated) == (1, 1)
    with target.connect() as conn:
        changed = conn.execute(text("SELECT label, updated_at FROM events_copy WHERE id = 1")).one()
    assert tuple(changed) == ("changed", "2024-03-01 10:30:00.123456")
    assert project.schema_history("events") == []
    # reconcile reads the TEXT timestamps as the run wrote them: source and target match.
    report = project.reconcile("events").report
    assert (report.source_rows, report.differences) == (3, 0), report.samples


def test_a_refusal_says_why_in_a_users_terms(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text(SOURCE_DDL["sqlite"]))
        conn.execute(
            text(
                "CREATE TABLE events_copy (id INTEGER PRIMARY KEY, ok INTEGER, doc TEXT, "
                "amount INTEGER, label TEXT, happened TEXT, created_at TEXT, updated_at TEXT)"
            )
        )
    _insert(engine, 1, datetime(2024, 3, 1, tzinfo=UTC), ok=True)
    job = {
        "load_type": "full",
        "source": {"connection": "db", "table": "events"},
        "target": {"connection": "db", "table": "events_copy"},
        "primary_key": ["id"],
    }
    project = Project.load(
        write_project(control=url, connections={"db": url}, jobs={"events": job})
    )

    run = project.run("events")

    assert run.run_status is RunStatus.FAILED
    assert run.error_message == (
        "target table events_copy conflicts with source events: column amount is INTEGER "
        "(integer) in the target but NUMERIC(8, 2) (decimal) in the source: decimal values "
        "cannot be stored in an integer column without loss; alter events_copy.amount to "
        "NUMERIC(8, 2) yourself, or drop the target table and run again; nothing was written"
    )
