"""Schema changes between runs on SQLite, PostgreSQL and MariaDB: a column added, dropped or
widened at the source is followed (``evolve``) or refused (``freeze``); a change that would lose
data is refused before anything is written; every change applied is recorded once (notes,
``etl_schema_changes``, ``highmark schema history``, a ``schema_changed`` alert)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, text

from highmark import Project, RunStatus
from highmark.config import TableJobSpec, parse_project_text
from highmark.destinations.changes import ChangeDestination
from highmark.sources.changes import ChangeSet
from highmark.sqlschema import reflect
from tests.cli.runner import hm
from tests.helpers import BASE_TIME

JOB = "items_sync"


def _ts(engine: Engine, seconds: int) -> str:
    value = BASE_TIME + timedelta(seconds=seconds)
    if engine.dialect.name == "postgresql":
        return value.isoformat()
    return value.replace(tzinfo=None).isoformat(" ")


def _create_items(engine: Engine, table: str = "items") -> None:
    stamp = {"postgresql": "timestamptz", "mysql": "DATETIME(6)", "sqlite": "TIMESTAMP"}
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(20) NOT NULL, "
                f"qty INTEGER, code INTEGER, updated_at {stamp[engine.dialect.name]} NOT NULL)"
            )
        )


def _insert(engine: Engine, first: int, last: int, table: str = "items", **extra: Any) -> None:
    columns = ["id", "name", "updated_at", *extra]
    names = ", ".join(columns)
    marks = ", ".join(f":{c}" for c in columns)
    rows = [
        {"id": i, "name": f"item {i}", "updated_at": _ts(engine, i), **extra}
        for i in range(first, last + 1)
    ]
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), rows)


def _job(table: str = "items", **options: Any) -> dict[str, Any]:
    return {
        "load_type": "incremental",
        "source": {"connection": "db", "table": table},
        "target": {"connection": "db", "table": f"{table}_copy"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        **options,
    }


def _columns(engine: Engine, table: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in inspect(engine).get_columns(table)}


def _rows(engine: Engine, query: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(query)).all())


def _add_column(engine: Engine, table: str, ddl: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {ddl}"))


def _widen_name(engine: Engine, table: str) -> None:
    sql = {
        "postgresql": f"ALTER TABLE {table} ALTER COLUMN name TYPE VARCHAR(100)",
        "mysql": f"ALTER TABLE {table} MODIFY COLUMN name VARCHAR(100) NOT NULL",
    }
    with engine.begin() as conn:
        conn.execute(text(sql[engine.dialect.name]))


def _drop_qty(engine: Engine, table: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} DROP COLUMN qty"))


def _code_to_text(engine: Engine, table: str) -> None:
    dialect = engine.dialect.name
    with engine.begin() as conn:
        if dialect == "postgresql":
            conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN code TYPE TEXT"))
        elif dialect == "mysql":
            conn.execute(text(f"ALTER TABLE {table} MODIFY COLUMN code TEXT"))
        else:  # SQLite changes a column's type by rebuilding its table
            conn.execute(text(f"ALTER TABLE {table} RENAME COLUMN code TO old_code"))
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN code TEXT"))
            conn.execute(text(f"UPDATE {table} SET code = old_code"))
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN old_code"))


def _project(write_project: Callable[..., Path], url: str, jobs: dict[str, Any]) -> Project:
    return Project.load(write_project(control=url, connections={"db": url}, jobs=jobs))


# ---------------------------------------------------------------------------- evolve


def test_evolve_adds_widens_and_keeps_dropped_columns(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    dialect = engine.dialect.name
    _create_items(engine)
    _insert(engine, 1, 3)
    project = _project(write_project, db_url, {JOB: _job()})
    assert project.run(JOB).run_status is RunStatus.SUCCESS

    _add_column(engine, "items", "channel VARCHAR(30)")
    if dialect != "sqlite":  # SQLite enforces no length: there is nothing to widen
        _widen_name(engine, "items")
    _drop_qty(engine, "items")
    _insert(engine, 4, 5, channel="web")
    long_name = "a name longer than twenty characters"
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE items SET name = :n, updated_at = :t WHERE id = 5"),
            {"n": long_name, "t": _ts(engine, 50)},
        )

    run = project.run(JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert (run.rows_read, run.rows_written) == (2, 2)
    columns = _columns(engine, "items_copy")
    assert {"channel", "qty"} <= set(columns)
    assert columns["channel"]["nullable"]
    rows = _rows(engine, "SELECT id, name, channel, qty FROM items_copy ORDER BY id")
    assert [(r[0], r[2], r[3]) for r in rows] == [
        (1, None, None), (2, None, None), (3, None, None), (4, "web", None), (5, "web", None)
    ]  # fmt: skip
    assert rows[4][1] == long_name
    notes = " | ".join(run.notes or [])
    assert "column items_copy.channel added" in notes
    assert "--full-refresh or a backfill" in notes
    assert "column qty is no longer read from source items" in notes
    kinds = {(c.column_name, c.change_kind) for c in project.schema_history(JOB)}
    expected = {("channel", "add"), ("qty", "drop")}
    if dialect != "sqlite":
        expected.add(("name", "widen"))
        assert "widened from VARCHAR(20) to VARCHAR(100)" in notes
        assert columns["name"]["type"].length == 100
    assert kinds == expected
    assert all(c.run_id == run.run_id for c in project.schema_history(JOB))

    # The next run finds the dropped column again: it is not recorded (or noted) twice.
    _insert(engine, 60, 60, channel="shop")
    again = project.run(JOB)
    assert again.run_status is RunStatus.SUCCESS
    assert not any("schema change" in n for n in again.notes or [])
    assert len(project.schema_history(JOB)) == len(expected)
    assert _rows(engine, "SELECT channel FROM items_copy WHERE id = 60") == [("shop",)]

    # A full refresh fills the new column everywhere.
    with engine.begin() as conn:
        conn.execute(text("UPDATE items SET channel = 'old'  WHERE id <= 3"))
    assert project.run(JOB, full_refresh=True).run_status is RunStatus.SUCCESS
    assert _rows(engine, "SELECT count(*) FROM items_copy WHERE channel IS NULL") == [(0,)]


def test_a_change_that_would_lose_data_is_refused_before_anything_is_written(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    _create_items(engine)
    _insert(engine, 1, 3, code=7)
    project = _project(write_project, db_url, {JOB: _job()})
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    mark = project.watermark(JOB)

    _code_to_text(engine, "items")  # the target's code is an integer column
    _add_column(engine, "items", "channel VARCHAR(30)")
    _insert(engine, 4, 4, code="A-17", channel="web")

    run = project.run(JOB)

    assert run.run_status is RunStatus.FAILED
    assert run.error_details is not None and not run.error_details["retryable"]
    assert run.error_details["exception_type"] == "SchemaConflictError"
    message = run.error_message or ""
    assert "\n" not in message
    assert "column code is" in message and "(integer) in the target but" in message
    assert "(text) in the source" in message
    assert "text values cannot be stored in an integer column without loss" in message
    assert "alter items_copy.code to" in message
    assert message.endswith("nothing was written")
    assert "channel" not in _columns(engine, "items_copy")  # nothing altered either
    assert _rows(engine, "SELECT count(*) FROM items_copy") == [(3,)]
    assert project.watermark(JOB) == mark
    assert project.schema_history(JOB) == []


# ---------------------------------------------------------------------------- freeze


def test_freeze_refuses_every_difference_before_anything_is_written(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    dialect = engine.dialect.name
    changes: dict[str, tuple[Callable[[Engine, str], None], str]] = {
        "added": (
            lambda e, t: _add_column(e, t, "channel VARCHAR(30)"),
            "column channel is missing",
        ),
        "dropped": (_drop_qty, "column qty is in the target but not read from the source"),
    }
    if dialect != "sqlite":
        changes["widened"] = (
            _widen_name,
            "column name is VARCHAR(20) in the target, narrower than VARCHAR(100) in the source",
        )
    for kind in changes:
        _create_items(engine, kind)
        _insert(engine, 1, 3, table=kind)
    jobs = {kind: _job(kind, schema_changes="freeze") for kind in changes}
    project = _project(write_project, db_url, jobs)
    for kind in changes:
        assert project.run(kind).run_status is RunStatus.SUCCESS
    before = {kind: _columns(engine, f"{kind}_copy") for kind in changes}

    for kind, (change, expected) in changes.items():
        change(engine, kind)
        with engine.begin() as conn:
            conn.execute(
                text(f"INSERT INTO {kind} (id, name, updated_at) VALUES (4, 'new', :t)"),
                {"t": _ts(engine, 4)},
            )
        mark = project.watermark(kind)

        run = project.run(kind)

        assert run.run_status is RunStatus.FAILED, kind
        message = run.error_message or ""
        assert expected in message, message
        assert message.endswith("nothing was written")
        assert run.error_details is not None and not run.error_details["retryable"]
        assert _rows(engine, f"SELECT count(*) FROM {kind}_copy") == [(3,)]
        assert set(_columns(engine, f"{kind}_copy")) == set(before[kind])
        assert project.watermark(kind) == mark
        assert project.schema_history(kind) == []


def test_a_top_level_schema_changes_is_every_jobs_default(
    tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    document = {
        "control": url,
        "schema_changes": "freeze",
        "connections": {"db": url},
        "jobs": {"frozen": _job(), "evolving": _job(schema_changes="evolve")},
    }
    path = tmp_path / "highmark.yml"
    path.write_text(json.dumps(document))
    project = Project.load(path)
    assert project.job("frozen").schema_changes == "freeze"
    assert project.job("evolving").schema_changes == "evolve"


# ---------------------------------------------------------------------------- record


def test_history_command_and_schema_changed_alert(
    tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine = engine_for(url)
    _create_items(engine)
    _insert(engine, 1, 2)
    received = tmp_path / "alerts.jsonl"
    document = {
        "control": url,
        "connections": {"db": url},
        "jobs": {JOB: _job()},
        "alerts": [
            {
                "type": "command",
                "command": ["sh", "-c", f"cat >> {received}; echo >> {received}"],
                "events": ["schema_changed"],
            }
        ],
    }
    (tmp_path / "highmark.yml").write_text(json.dumps(document))
    hm("run", JOB, cwd=tmp_path)
    empty = hm("schema", "history", JOB, cwd=tmp_path)
    assert f"{JOB}: no schema change recorded yet" in empty.out
    _add_column(engine, "items", "channel TEXT")
    _insert(engine, 3, 3, channel="web")

    hm("run", JOB, cwd=tmp_path)

    shown = hm("schema", "history", JOB, cwd=tmp_path)
    assert "channel" in shown.out and "add" in shown.out and "items_copy" in shown.out
    rows = json.loads(hm("schema", "history", JOB, "--json", cwd=tmp_path).out)
    assert [(r["column_name"], r["change_kind"], r["new_type"]) for r in rows] == [
        ("channel", "add", "TEXT")
    ]
    assert rows[0]["run_id"] == 2
    alerts = [json.loads(line) for line in received.read_text().splitlines() if line.strip()]
    assert [a["event"] for a in alerts] == ["schema_changed"]
    assert "column items_copy.channel added (TEXT)" in alerts[0]["message"]
    assert alerts[0]["changes"][0]["column_name"] == "channel"
    missing = hm("schema", "history", "nope", cwd=tmp_path, code=2)
    assert "nope" in missing.err and len(missing.err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- cdc


def test_a_cdc_target_gains_the_column_the_change_stream_brings(
    db_url: str, engine_for: Callable[[str], Engine], tmp_path: Path
) -> None:
    """The CDC writer on its own (the log itself needs server settings: tests/cdc): a column added
    at the source is added to the target before the changes that carry it, and reported."""
    engine = engine_for(db_url)
    _create_items(engine)
    document = {
        "connections": {"db": db_url},
        "jobs": {
            "cdc": {
                "load_type": "cdc",
                "source": {"connection": "db", "table": "items"},
                "target": {"connection": "db", "table": "items_copy"},
                "primary_key": ["id"],
            }
        },
    }
    config = parse_project_text(json.dumps(document), tmp_path / "highmark.yml")
    job = config.jobs["cdc"]
    assert isinstance(job, TableJobSpec)

    def source_schema() -> Any:
        with engine.connect() as conn:
            return reflect(conn, None, "items", keys=False)

    destination = ChangeDestination(config.resolve("db"), job.target, job)
    try:
        assert destination.prepare(source_schema()) == []  # created
        _add_column(engine, "items", "channel VARCHAR(30)")

        changes = destination.prepare(source_schema())

        assert [(c.column, c.kind.value, c.target_table) for c in changes] == [
            ("channel", "add", "items_copy")
        ]
        at = datetime(2024, 1, 1, tzinfo=UTC)
        stream = ChangeSet()
        row = {"id": 1, "name": "a", "qty": 1, "code": 2, "updated_at": at, "channel": "web"}
        stream.upsert((1,), row, at, frozenset())
        assert destination.apply(stream).rows_written == 1
    finally:
        destination.close()
    assert _rows(engine, "SELECT id, channel FROM items_copy") == [(1, "web")]


def test_a_source_timestamp_become_timestamptz_widens_a_postgresql_target_keeping_instants(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """The source column gains a zone; the naive column of a target made by hand (wall times
    in its connection's zone, here Europe/Paris) becomes timestamptz, every instant kept.
    (A target highmark makes has timestamptz from the start.)"""
    engine = engine_for(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id BIGINT PRIMARY KEY, updated_at timestamp)"))
        conn.execute(text("CREATE TABLE items_copy (id BIGINT PRIMARY KEY, updated_at timestamp)"))
        conn.execute(
            text("INSERT INTO items VALUES (1, '2024-07-01 10:00'), (2, '2024-12-01 10:00')")
        )
    job = {**_job(), "target": {"connection": "dw", "table": "items_copy"}}
    path = write_project(
        control=pg_url,
        connections={"db": pg_url, "dw": {"url": pg_url, "timezone": "Europe/Paris"}},
        jobs={JOB: job},
    )
    project = Project.load(path)
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    paris = [(1, datetime(2024, 7, 1, 12)), (2, datetime(2024, 12, 1, 11))]
    assert _rows(engine, "SELECT id, updated_at FROM items_copy ORDER BY id") == paris
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE items ALTER COLUMN updated_at TYPE timestamptz "
                          "USING updated_at AT TIME ZONE 'UTC'"))  # fmt: skip
        conn.execute(text("INSERT INTO items VALUES (3, '2025-01-01 10:00+00')"))

    run = project.run(JOB)
    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert any("widened from TIMESTAMP to TIMESTAMP(6) WITH TIME ZONE" in n
               for n in run.notes or []), run.notes  # fmt: skip
    assert _columns(engine, "items_copy")["updated_at"]["type"].timezone is True
    query = "SELECT id, updated_at FROM {} ORDER BY id"
    assert _rows(engine, query.format("items_copy")) == _rows(engine, query.format("items"))


def test_freeze_refuses_a_source_timestamp_that_gained_a_zone(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id BIGINT PRIMARY KEY, updated_at timestamptz)"))
        conn.execute(text("INSERT INTO items VALUES (1, '2024-07-01 10:00+00')"))
        conn.execute(text("CREATE TABLE items_copy (id BIGINT PRIMARY KEY, updated_at timestamp)"))
    path = write_project(
        control=pg_url, connections={"db": pg_url}, jobs={JOB: _job(schema_changes="freeze")}
    )
    project = Project.load(path)

    run = project.run(JOB)

    assert run.run_status is RunStatus.FAILED
    assert (
        "column updated_at is TIMESTAMP in the target, narrower than "
        "TIMESTAMP WITH TIME ZONE in the source" in (run.error_message or "")
    )
    assert _rows(engine, "SELECT count(*) FROM items_copy") == [(0,)]
