"""The real ``highmark`` command, run as a subprocess against real databases.

Every command and exit code: 0 success, 1 a failed run, 2 bad usage / configuration / unknown job.
Every error is one line on stderr starting ``highmark: error:`` and never a traceback (unless
``--debug``); a password in a connection URL never shows, not even when the connection fails.
Subprocesses cost ~0.4 s each, so each test shares one project between several commands, and
independent read-only commands run concurrently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.engine import Engine

from highmark.cli import cli
from highmark.store.tables import etl_job_runs
from tests.cli.runner import Result, assert_error, finish, hm, hm_many, start
from tests.helpers import (
    BASE_TIME,
    create_orders,
    insert_orders,
    order,
    orders_table,
    snapshot,
    update_order,
)

SECRET = "S3cretPassw0rd"
# The etl_job_runs columns a run's JSON must carry (it may carry more; all are column names).
RUN_FIELDS = {
    "run_id", "job_id", "run_status", "started_at", "finished_at", "duration_seconds",
    "rows_read", "rows_written", "rows_updated", "rows_deleted", "watermark_start",
    "watermark_end", "error_message", "error_details", "triggered_by",
}  # fmt: skip


def assert_utc_iso(value: Any) -> datetime:
    assert isinstance(value, str) and value.endswith("Z"), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0)
    return parsed


# ------------------------------------------------------------------------------------ projects


def job(
    table: str, target: str, *, source: str = "shop", sink: str = "warehouse", **spec: Any
) -> dict[str, Any]:
    return {
        "load_type": "incremental",
        "source": {"connection": source, "table": table},
        "target": {"connection": sink, "table": target},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        **spec,
    }


STANDARD_JOBS: dict[str, dict[str, Any]] = {
    "orders_sync": job("orders", "orders"),
    "orders_ids": job("orders", "orders_ids", watermark={"column": "id", "type": "integer"}),
    "orders_full": job("orders", "orders_full", load_type="full", watermark=None),
}
BROKEN_JOB = job("missing_table", "missing_copy", load_type="full", watermark=None)


def write_yaml(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class SqliteProject:
    """``DIR/highmark.yml`` with relative SQLite URLs: ``shop.db`` (10 orders), ``warehouse.db``."""

    dir: Path
    file: Path
    shop: Engine
    warehouse: Engine

    def write(self, jobs: dict[str, Any], **document: Any) -> None:
        connections = {"shop": "sqlite:///shop.db", "warehouse": "sqlite:///warehouse.db"}
        write_yaml(self.file, {**document, "connections": connections, "jobs": jobs})

    def hm(self, *args: str, code: int | None = 0, env: dict[str, str] | None = None) -> Result:
        return hm(*args, cwd=self.dir, env=env, code=code)

    def hm_many(self, *commands: Sequence[str], code: int | None = 0) -> list[Result]:
        return hm_many(commands, self.dir, code=code)


@pytest.fixture
def project(tmp_path: Path, engine_for: Callable[[str], Engine]) -> SqliteProject:
    folder = tmp_path / "proj"
    folder.mkdir()
    shop = engine_for(f"sqlite:///{folder / 'shop.db'}")
    insert_orders(shop, create_orders(shop), [order(i) for i in range(1, 11)])
    made = SqliteProject(
        folder, folder / "highmark.yml", shop, engine_for(f"sqlite:///{folder / 'warehouse.db'}")
    )
    made.write(dict(STANDARD_JOBS))
    return made


# ------------------------------------------------------------------------------------ tests


def test_migrate_run_json_and_runs(project: SqliteProject) -> None:
    first = project.hm("migrate")
    assert len(first.out_lines) == 1, str(first)
    assert first.out.startswith("control store migrated from empty to revision "), str(first)
    again = project.hm("migrate")
    assert again.out.startswith("control store is up to date (revision "), str(again)

    never, never_json = project.hm_many(("status",), ("status", "--json"))
    assert "never run" in never.out and "orders_sync" in never.out
    [row] = [r for r in never_json.json() if r["job_id"] == "orders_sync"]
    assert row["run_status"] is None and row["run_id"] is None

    ran = project.hm("run", "orders_sync")
    assert len(ran.out_lines) == 1, str(ran)
    assert ran.out.startswith("orders_sync: success in "), str(ran)
    assert "10 read, 10 inserted, 0 updated, 0 deleted" in ran.out
    assert "watermark 2024-01-01T12:00:10Z / 10" in ran.out

    insert_orders(project.shop, orders_table(), [order(11), order(12)])
    record = project.hm("run", "orders_sync", "--json", "--triggered-by", "api").json()
    assert isinstance(record, dict)
    assert set(record) >= RUN_FIELDS, sorted(RUN_FIELDS - set(record))
    assert set(record) <= set(etl_job_runs.c.keys()), sorted(
        set(record) - set(etl_job_runs.c.keys())
    )
    assert (record["job_id"], record["run_status"], record["triggered_by"]) == (
        "orders_sync", "success", "api",
    )  # fmt: skip
    counts = [record[k] for k in ("rows_read", "rows_written", "rows_updated", "rows_deleted")]
    assert counts == [2, 2, 0, 0]
    started, finished = assert_utc_iso(record["started_at"]), assert_utc_iso(record["finished_at"])
    assert started <= finished
    assert isinstance(record["duration_seconds"], int)
    assert assert_utc_iso(record["watermark_start"]) == BASE_TIME + timedelta(seconds=10)
    assert assert_utc_iso(record["watermark_end"]) == BASE_TIME + timedelta(seconds=12)
    assert record["error_message"] is None and record["error_details"] is None

    latest, every, table = project.hm_many(
        ("runs", "orders_sync", "--limit", "1", "--json"), ("runs", "--json"), ("runs",)
    )
    assert [r["run_id"] for r in latest.json()] == [record["run_id"]]
    assert latest.json()[0]["triggered_by"] == "api"
    assert [r["triggered_by"] for r in every.json()] == ["api", "manual"]  # newest first
    for r in every.json():
        assert_utc_iso(r["started_at"])
        assert set(r) <= set(etl_job_runs.c.keys())
    assert "orders_sync" in table.out and "api" in table.out and "manual" in table.out
    assert snapshot(project.warehouse, "orders") == snapshot(project.shop, "orders")


def test_failed_run_run_all_status_and_jobs(project: SqliteProject) -> None:
    project.write({**STANDARD_JOBS, "broken": BROKEN_JOB})

    failed = project.hm("run", "broken", code=1)
    assert len(failed.out_lines) == 1, str(failed)
    assert failed.out.startswith("broken: failed in "), str(failed)
    assert "missing_table" in failed.out

    as_json, shown = project.hm_many(
        ("runs", "--status", "failed", "--since", "24h", "--json"),
        ("runs", "--status", "failed", "--since", "24h"),
    )
    recent = as_json.json()
    assert [(r["job_id"], r["run_status"]) for r in recent] == [("broken", "failed")]
    assert "missing_table" in recent[0]["error_message"]
    assert recent[0]["error_details"]["exception_type"] == "SourceError"
    assert "broken" in shown.out and "orders_sync" not in shown.out

    everything = project.hm("run", "--all", code=1)
    lines = everything.out_lines
    assert [line.split(":")[0] for line in lines] == [
        "orders_sync", "orders_ids", "orders_full", "broken",
    ], str(everything)  # fmt: skip
    assert [line.split(": ")[1].split()[0] for line in lines] == [
        "success", "success", "success", "failed",
    ]  # fmt: skip
    as_json = project.hm("run", "--all", "--json", code=1).json()
    assert [(r["job_id"], r["run_status"]) for r in as_json] == [
        ("orders_sync", "success"), ("orders_ids", "success"), ("orders_full", "success"),
        ("broken", "failed"),
    ]  # fmt: skip
    assert all(set(r) >= RUN_FIELDS for r in as_json)

    status_json, jobs_json, jobs_table = project.hm_many(
        ("status", "--json"), ("jobs", "--json"), ("jobs",)
    )
    status = {r["job_id"]: r for r in status_json.json()}
    assert {k: v["run_status"] for k, v in status.items()} == {
        "broken": "failed", "orders_full": "success", "orders_ids": "success",
        "orders_sync": "success",
    }  # fmt: skip
    assert status["broken"]["run_id"] == as_json[-1]["run_id"]
    assert "missing_table" in status["broken"]["error_message"]

    jobs = {j["job_id"]: j for j in jobs_json.json()}
    assert sorted(jobs) == ["broken", "orders_full", "orders_ids", "orders_sync"]
    assert all(j["is_active"] is True for j in jobs.values())
    assert jobs["orders_ids"]["load_type"] == "incremental"
    assert (jobs["broken"]["source_table"], jobs["broken"]["target_table"]) == (
        "missing_table", "missing_copy",
    )  # fmt: skip
    assert "orders → orders_full" in jobs_table.out

    # A job removed from the file stays in etl_jobs, inactive, with its history.
    project.write(dict(STANDARD_JOBS))
    jobs_json, jobs_table, status_json, history = project.hm_many(
        ("jobs", "--json"), ("jobs",), ("status", "--json"), ("runs", "broken", "--json")
    )
    jobs = {j["job_id"]: j for j in jobs_json.json()}
    assert jobs["broken"]["is_active"] is False
    assert all(jobs[j]["is_active"] is True for j in STANDARD_JOBS)
    listed = next(line for line in jobs_table.out_lines if "broken" in line)
    assert "no" in [cell.strip() for cell in listed.split("│")]
    assert {r["job_id"] for r in status_json.json()} == set(STANDARD_JOBS)
    assert len(history.json()) == 3
    clean = project.hm("run", "--all")
    assert len(clean.out_lines) == 3 and all(": success in " in line for line in clean.out_lines)


def test_full_refresh_makes_the_target_equal_the_source(project: SqliteProject) -> None:
    project.hm("run", "orders_sync")
    # Changes an incremental run cannot see: a hard delete, an update that kept its timestamp.
    with project.shop.begin() as conn:
        conn.execute(text("DELETE FROM orders WHERE id = 3"))
    update_order(project.shop, orders_table(), 5, customer="renamed quietly")
    assert project.hm("run", "orders_sync", "--json").json()["rows_read"] == 0

    record = project.hm("run", "orders_sync", "--full-refresh", "--json").json()
    assert record["run_status"] == "success"
    counts = [record[k] for k in ("rows_read", "rows_written", "rows_updated", "rows_deleted")]
    assert counts == [9, 0, 1, 1]
    assert snapshot(project.warehouse, "orders") == snapshot(project.shop, "orders")


def test_unknown_jobs_and_bad_usage_exit_2_with_one_line(project: SqliteProject) -> None:
    plain = job("orders", "orders_plain", watermark={"column": "updated_at", "type": "timestamp"})
    project.write({**STANDARD_JOBS, "orders_plain": plain})
    debug = project.hm("--debug", "run", "nope", code=2)  # (also creates the control store)
    assert "Traceback" in debug.err
    assert debug.err.splitlines()[-1].startswith("highmark: error: unknown job 'nope'")
    cases: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        (("run", "nope"), ("unknown job 'nope'", "orders_sync")),
        (("run",), ("JOB_ID", "--all")),
        (("run", "orders_sync", "--triggered-by", "robot"), ("--triggered-by",)),
        (("runs", "--since", "bogus"), ("--since", "bogus")),
        (("runs", "nope"), ("unknown job 'nope'",)),
        (("watermark", "show", "nope"), ("unknown job 'nope'",)),
        (("checkpoint", "show", "nope"), ("unknown job 'nope'",)),
        (("check", "nope"), ("unknown job 'nope'",)),
        (("frobnicate",), ("frobnicate",)),
        # A tiebreaker value for a job that has no tiebreaker would be silently ignored.
        (("watermark", "set", "orders_plain", "2024-01-01T00:00:00Z/5"), ("tiebreaker",)),
    ]
    results = hm_many([args for args, _ in cases], project.dir, code=None)
    for (_, fragments), result in zip(cases, results, strict=True):
        assert_error(result, 2, *fragments)


def test_watermark_show_set_reset(project: SqliteProject) -> None:
    assert "orders_sync: no watermark yet" in project.hm("watermark", "show", "orders_sync").out
    first = project.hm("run", "orders_sync", "--json").json()

    shown, as_json = project.hm_many(
        ("watermark", "show", "orders_sync"), ("watermark", "show", "orders_sync", "--json")
    )
    assert "orders.updated_at (timestamp) = 2024-01-01T12:00:10Z / 10" in shown.out, str(shown)
    assert f"set by run {first['run_id']}" in shown.out
    mark = as_json.json()
    assert set(mark) == {
        "job_id", "source_table", "watermark_column", "watermark_type", "last_value_timestamp",
        "last_value_integer", "last_successful_run_id", "last_updated_at",
    }  # fmt: skip
    assert (mark["job_id"], mark["source_table"], mark["watermark_column"]) == (
        "orders_sync", "orders", "updated_at",
    )  # fmt: skip
    assert (mark["watermark_type"], mark["last_value_timestamp"], mark["last_value_integer"]) == (
        "timestamp", "2024-01-01T12:00:10Z", 10,
    )  # fmt: skip
    assert mark["last_successful_run_id"] == first["run_id"]
    assert_utc_iso(mark["last_updated_at"])

    # Backfill: a timestamp alone, then a timestamp with its tiebreaker; an integer for integers.
    done = project.hm("watermark", "set", "orders_sync", "2024-01-01T12:00:05Z")
    assert done.out == "orders_sync: watermark set to 2024-01-01T12:00:05Z\n"
    with_id, integer = project.hm_many(
        ("watermark", "set", "orders_sync", "2024-01-01T12:00:04Z/4"),
        ("watermark", "set", "orders_ids", "7"),
    )
    assert with_id.out == "orders_sync: watermark set to 2024-01-01T12:00:04Z / 4\n"
    assert integer.out == "orders_ids: watermark set to 7\n"
    marks = project.hm_many(
        ("watermark", "show", "orders_sync", "--json"),
        ("watermark", "show", "orders_ids", "--json"),
    )
    assert [
        (m["watermark_type"], m["last_value_timestamp"], m["last_value_integer"])
        for m in (r.json() for r in marks)
    ] == [("timestamp", "2024-01-01T12:00:04Z", 4), ("integer", None, 7)]
    assert all(r.json()["last_successful_run_id"] is None for r in marks)  # set by hand
    again = project.hm("run", "orders_sync", "--json").json()
    assert again["rows_read"] == 6  # ids 5..10: after (12:00:04, 4)
    assert (again["watermark_start"], again["watermark_start_integer"]) == (
        "2024-01-01T12:00:04Z", 4,
    )  # fmt: skip
    assert project.hm("run", "orders_ids", "--json").json()["rows_read"] == 3  # ids 8..10

    bad = [
        (("watermark", "set", "orders_ids", "2024-01-01T00:00:00Z"), ("an integer",)),
        (("watermark", "set", "orders_sync", "yesterday"), ("'yesterday'", "ISO 8601")),
        (("watermark", "set", "orders_full", "5"), ("orders_full", "no watermark")),
    ]
    results = project.hm_many(*(args for args, _ in bad), code=None)
    for (_, fragments), result in zip(bad, results, strict=True):
        assert_error(result, 2, *fragments)

    reset = project.hm("watermark", "reset", "orders_sync")
    assert reset.out.startswith("orders_sync: watermark reset"), str(reset)
    json_none, ids = project.hm_many(
        ("watermark", "show", "orders_sync", "--json"),
        ("watermark", "show", "orders_ids", "--json"),
    )
    assert json_none.out == "null\n"
    assert ids.json()["last_value_integer"] == 10  # the bad values changed nothing
    assert project.hm("run", "orders_sync", "--json").json()["rows_read"] == 10


def test_checkpoint_show_and_reset(project: SqliteProject) -> None:
    # The target refuses order 7: the run fails in its third batch (whose other rows are written:
    # bad rows), after two committed and checkpointed batches.
    with project.warehouse.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY,"
                " customer VARCHAR(100) NOT NULL CHECK (customer <> 'customer 7'),"
                " amount NUMERIC(12, 2) NOT NULL, updated_at DATETIME NOT NULL,"
                " deleted_at DATETIME)"
            )
        )
    project.write({"orders_sync": job("orders", "orders", batch_size=3)})
    assert project.hm("checkpoint", "show", "orders_sync").out == "null\n"

    failed = project.hm("run", "orders_sync", "--json", code=1).json()
    assert failed["run_status"] == "failed" and failed["rows_read"] == 9, failed
    assert failed["error_details"]["source_record_id"] == 7
    shown = project.hm("checkpoint", "show", "orders_sync")
    data = shown.json()
    assert shown.out == json.dumps(data, indent=2, sort_keys=True) + "\n"  # pretty, stable
    assert data["run_id"] == failed["run_id"]
    assert (data["mode"], data["batch_number"], data["total_rows_processed"]) == (
        "incremental", 2, 6,
    )  # fmt: skip
    assert (data["last_value_timestamp"], data["last_value_integer"]) == (
        "2024-01-01T12:00:06Z", 6,
    )  # fmt: skip
    cleared = project.hm("checkpoint", "reset", "orders_sync")
    assert cleared.out.strip() == "orders_sync: checkpoint cleared"
    assert project.hm("checkpoint", "show", "orders_sync").out == "null\n"


def test_project_file_selection(project: SqliteProject, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = tmp_path / "nowhere" / "highmark.yml"
    on_file = {"HIGHMARK_PROJECT": str(project.file)}
    on_missing = {"HIGHMARK_PROJECT": str(missing)}
    first = hm("--project", str(project.file), "jobs", "--json", cwd=elsewhere)
    # Relative SQLite paths are the project file's, not the working directory's.
    assert (project.dir / ".highmark" / "control.db").is_file()
    calls: list[tuple[tuple[str, ...], dict[str, str] | None]] = [
        (("--project", str(project.dir), "jobs", "--json"), None),  # a folder: its highmark.yml
        (("jobs", "--json"), on_file),
        (("--project", str(project.file), "jobs", "--json"), on_missing),  # --project wins
        (("jobs",), None),
        (("jobs",), on_missing),
    ]
    started = [(args, start(args, elsewhere, env)) for args, env in calls]
    found_dir, found_env, found_flag, nothing, gone = (finish(*s, code=None) for s in started)
    for found in (first, found_dir, found_env, found_flag):
        assert sorted(j["job_id"] for j in found.json()) == sorted(STANDARD_JOBS), str(found)
    assert_error(nothing, 2, "highmark.yml", "project file not found", "HIGHMARK_PROJECT")
    assert_error(gone, 2, str(missing), "project file not found")
    assert list(elsewhere.iterdir()) == []


def test_help_for_every_command_and_subcommand(tmp_path: Path) -> None:
    paths: list[tuple[str, ...]] = [()]
    for name, command in cli.commands.items():
        paths.append((name,))
        for sub in getattr(command, "commands", {}):
            paths.append((name, sub))
    expected = {
        ("migrate",), ("run",), ("jobs",), ("status",), ("runs",), ("watermark",),
        ("watermark", "show"), ("watermark", "set"), ("watermark", "reset"), ("checkpoint",),
        ("checkpoint", "show"), ("checkpoint", "reset"), ("demo",),
    }  # fmt: skip
    assert expected <= set(paths)
    results = hm_many([(*p, "--help") for p in paths], tmp_path)
    for path, result in zip(paths, results, strict=True):
        assert result.code == 0, str(result)
        assert result.out.startswith(f"Usage: {' '.join(('highmark', *path))} "), str(result)
        assert len(result.out.strip().splitlines()) > 3 and result.err == "", str(result)


def test_demo_runs_end_to_end_and_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    result = hm("demo", str(demo), cwd=tmp_path)
    assert "5,000 read, 5,000 inserted" in result.out, str(result)
    assert "25 inserted" in result.out, str(result)
    assert (demo / "highmark.yml").is_file() and (demo / "warehouse.db").is_file()

    refused = hm("demo", str(demo), cwd=tmp_path, code=None)
    assert refused.code != 0
    assert_error(refused, refused.code, "not empty")


def test_a_password_never_shows(tmp_path: Path, engine_for: Callable[[str], Engine]) -> None:
    folder = tmp_path / "proj"
    warehouse = f"sqlite:///{folder / 'warehouse.db'}"
    env = {"HM_TEST_SOURCE_URL": f"postgresql://etl:{SECRET}@127.0.0.1:1/shop"}
    write_yaml(
        folder / "highmark.yml",
        {
            "connections": {"pg": "${HM_TEST_SOURCE_URL}", "warehouse": warehouse},
            "jobs": {
                "pg_sync": job("orders", "orders", source="pg"),
                "pg_full": job(
                    "orders", "orders_full", source="pg", load_type="full", watermark=None
                ),
            },
        },
    )
    outputs: list[Result] = [hm("run", "pg_sync", cwd=folder, env=env, code=1)]
    assert "pg_sync: failed" in outputs[0].out and "127.0.0.1" in outputs[0].out, str(outputs[0])
    outputs.append(hm("--debug", "run", "pg_full", "--json", cwd=folder, env=env, code=1))
    outputs += hm_many(
        [("runs", "--json"), ("jobs", "--json"), ("--debug", "check", "pg_sync")],
        folder,
        env,
        code=None,
    )
    runs = outputs[2].json()
    assert len(runs) == 2 and all(r["run_status"] == "failed" for r in runs)
    assert all("port 1" in r["error_message"] for r in runs), runs
    assert outputs[4].code == 1 and "fail" in outputs[4].out  # check: the source is unreachable

    # The control store itself unreachable: one line, exit 1, no password (not even --debug).
    control_env = {"HM_TEST_CONTROL_URL": f"postgresql://etl:{SECRET}@127.0.0.1:1/control"}
    write_yaml(
        tmp_path / "dead" / "highmark.yml",
        {"control": "${HM_TEST_CONTROL_URL}", "connections": {}, "jobs": {}},
    )
    dead = hm("jobs", cwd=tmp_path / "dead", env=control_env, code=None)
    assert_error(dead, 1, "control store")
    outputs += [dead, hm("--debug", "status", cwd=tmp_path / "dead", env=control_env, code=1)]

    # A URL refused by the configuration: exit 2, no password.
    write_yaml(
        tmp_path / "bad" / "highmark.yml",
        {"connections": {"ora": f"oracle://etl:{SECRET}@db/x"}, "jobs": {}},
    )
    refused = hm("jobs", cwd=tmp_path / "bad", code=None)
    assert_error(refused, 2, "connections.ora.url", "unsupported scheme 'oracle'")
    outputs.append(refused)

    for result in outputs:
        assert SECRET not in result.out + result.err, str(result)


def test_postgresql_control_store(project: SqliteProject, pg_url: str) -> None:
    project.write(dict(STANDARD_JOBS), control=pg_url)
    assert project.hm("migrate").out.startswith("control store migrated from empty to revision")
    ran = project.hm("run", "orders_sync", "--triggered-by", "scheduler")
    assert "10 read, 10 inserted" in ran.out, str(ran)
    runs, status, mark = (
        r.json()
        for r in hm_many(
            [
                ("runs", "--json"),
                ("status", "--json"),
                ("watermark", "show", "orders_sync", "--json"),
            ],
            project.dir,
        )
    )
    assert [(r["job_id"], r["triggered_by"], r["rows_written"]) for r in runs] == [
        ("orders_sync", "scheduler", 10),
    ]  # fmt: skip
    assert assert_utc_iso(runs[0]["started_at"]) <= assert_utc_iso(runs[0]["finished_at"])
    assert {r["job_id"]: r["run_status"] for r in status}["orders_sync"] == "success"
    assert (mark["last_value_timestamp"], mark["last_value_integer"]) == (
        "2024-01-01T12:00:10Z",
        10,
    )
    # The SQLite control database was not used.
    assert not (project.dir / ".highmark" / "control.db").exists()


def test_mariadb_source_target_and_control(
    mysql_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    engine = engine_for(mysql_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 11)])
    write_yaml(
        tmp_path / "highmark.yml",
        {
            "control": mysql_url,
            "connections": {"db": mysql_url},
            "jobs": {"orders_sync": job("orders", "orders_copy", source="db", sink="db")},
        },
    )
    first = hm("run", "orders_sync", "--json", cwd=tmp_path).json()
    assert (first["run_status"], first["rows_read"], first["rows_written"]) == ("success", 10, 10)
    update_order(engine, table, 4, amount="99.99", updated_at=BASE_TIME + timedelta(hours=1))
    insert_orders(engine, table, [order(11, at=BASE_TIME + timedelta(hours=1))])
    second = hm("run", "orders_sync", "--json", cwd=tmp_path).json()
    counts = [second[k] for k in ("rows_read", "rows_written", "rows_updated", "rows_deleted")]
    assert counts == [2, 1, 1, 0]
    assert assert_utc_iso(second["watermark_end"]) == BASE_TIME + timedelta(hours=1)
    mark = hm("watermark", "show", "orders_sync", "--json", cwd=tmp_path).json()
    assert (mark["last_value_timestamp"], mark["last_value_integer"]) == (
        "2024-01-01T13:00:00Z",
        11,
    )
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
