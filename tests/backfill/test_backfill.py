"""Backfills on real databases: `(X, Y]` loaded again without moving the mark, beside the job's
regular runs, never beside another backfill, resumable after kill -9 from a checkpoint of its own.

The harm is done for real: the regular run and the first backfill are stopped at failpoints in
child processes, or SIGKILLed there; the invariants are checked in the databases.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine

from highmark.project import Project
from tests.faults.harness import Pause, kill_env, run, start
from tests.helpers import (
    BASE_TIME,
    copy_job,
    insert_orders,
    order,
    orders_table,
    seed_orders,
    snapshot,
)

ROWS = 30
BATCH = 4
# Rows 1..30 are stamped BASE_TIME + i // 3 seconds: (B+2s, B+6s] holds rows 9..20.
LOW, HIGH = BASE_TIME + timedelta(seconds=2), BASE_TIME + timedelta(seconds=6)
IN_WINDOW = set(range(9, 21))


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _setup(
    url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> tuple[Engine, Path]:
    engine = engine_for(url)
    seed_orders(engine, ROWS)
    project = write_project(
        control=url, connections={"db": url}, jobs={"sync": copy_job(batch_size=BATCH)}
    )
    return engine, project


def _break_window(engine: Engine) -> None:
    """Damage the target inside the window (a row changed, a row lost): what a backfill mends."""
    target = orders_table("orders_copy")
    with engine.begin() as conn:
        conn.execute(update(target).where(target.c.id == 10).values(customer="damaged"))
        conn.execute(delete(target).where(target.c.id == 15))
        conn.execute(update(target).where(target.c.id == 25).values(customer="outside"))


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_backfill_reloads_its_window_and_leaves_the_mark(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine, project_file = _setup(db_url, engine_for, write_project)
    project = Project.load(project_file)
    assert project.run("sync").succeeded
    mark = project.watermark("sync")
    _break_window(engine)

    record = project.backfill("sync", _iso(LOW), _iso(HIGH))

    assert record.succeeded and record.is_backfill
    assert record.rows_read == len(IN_WINDOW)  # exactly (LOW, HIGH]: rows at LOW excluded
    assert (record.rows_written, record.rows_updated) == (1, 1)
    assert record.notes and "backfill of" in record.notes[0]
    assert record.backfill_window == {"from": _iso(LOW), "to": _iso(HIGH)}
    rows = {r["id"]: r for r in snapshot(engine, "orders_copy")}
    assert rows[10]["customer"] == "customer 10" and 15 in rows
    assert rows[25]["customer"] == "outside"  # outside the window: untouched
    assert project.watermark("sync") == mark  # the mark did not move
    assert [c.change for c in project.watermark_history("sync")] == ["run"]
    assert project.checkpoint("sync") is None and project.backfill_checkpoint("sync") is None

    # Bad windows fail before any work, with one line.
    for low, high, message in [
        (_iso(HIGH), _iso(LOW), "is empty"),
        ("yesterday", _iso(HIGH), "is not an ISO 8601"),
        (_iso(LOW), f"{_iso(HIGH)}/5", "timestamp, not"),
    ]:
        with pytest.raises(Exception, match=message):
            project.backfill("sync", low, high)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_backfill_runs_beside_a_regular_run_but_not_beside_another_backfill(
    db_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    engine, project_file = _setup(db_url, engine_for, write_project)
    nothing_yet = run(project_file, "backfill", "sync", "--from", _iso(LOW), "--to", _iso(HIGH))
    assert nothing_yet.returncode == 2 and "no watermark yet" in nothing_yet.stderr
    assert run(project_file, "run", "sync").returncode == 0
    insert_orders(engine, orders_table(), [order(i) for i in range(31, 51)])
    target = orders_table("orders_copy")
    with engine.begin() as conn:
        conn.execute(delete(target).where(target.c.id == 15))
    regular_pause = Pause(tmp_path, "after_target_commit", 2)
    regular = start(project_file, "run", "sync", env=regular_pause.env)
    regular_pause.wait(regular)  # a regular run is live, holding its checkpoint

    (tmp_path / "backfill").mkdir()
    backfill_pause = Pause(tmp_path / "backfill", "after_target_commit", 2)
    backfill = start(
        project_file, "backfill", "sync", "--from", _iso(LOW), "--to", _iso(HIGH),
        env=backfill_pause.env,
    )  # fmt: skip
    backfill_pause.wait(backfill)
    try:
        second = run(project_file, "backfill", "sync", "--from", _iso(LOW), "--to", _iso(HIGH))
        assert second.returncode == 1, second.stderr
        assert "a backfill of job sync is already running" in second.stderr
        project = Project.load(project_file)
        regular_checkpoint = project.checkpoint("sync")
        backfill_checkpoint = project.backfill_checkpoint("sync")
        assert regular_checkpoint is not None and backfill_checkpoint is not None
        assert regular_checkpoint["run_id"] != backfill_checkpoint["run_id"]
        assert backfill_checkpoint["backfill_window"] == {"from": _iso(LOW), "to": _iso(HIGH)}
    finally:
        backfill_pause.release()
        regular_pause.release()
    _, backfill_err = backfill.communicate(timeout=120)
    _, regular_err = regular.communicate(timeout=120)
    assert backfill.returncode == 0, backfill_err
    assert regular.returncode == 0, regular_err

    runs = _json(run(project_file, "runs", "sync", "--json"))
    assert [r["run_status"] for r in runs] == ["success", "success", "success"]  # none refused
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    # Only the regular runs moved the mark, to the last row.
    changes = _json(run(project_file, "watermark", "history", "sync", "--json"))
    regular = [r["run_id"] for r in runs if r["backfill_window"] is None]
    assert [(c["change"], c["run_id"]) for c in changes] == [("run", i) for i in regular]
    assert changes[0]["new_value_integer"] == 50
    assert project.checkpoint("sync") is None and project.backfill_checkpoint("sync") is None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_backfill_resumes_from_its_own_checkpoint(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine, project_file = _setup(db_url, engine_for, write_project)
    assert run(project_file, "run", "sync").returncode == 0
    _break_window(engine)
    args = ("backfill", "sync", "--from", _iso(LOW), "--to", _iso(HIGH))

    killed = run(project_file, *args, env=kill_env("after_target_commit", 2))
    assert killed.returncode == -9, killed.stderr
    project = Project.load(project_file)
    saved = project.backfill_checkpoint("sync")
    assert saved is not None and saved["batch_number"] == 1
    assert project.checkpoint("sync") is None  # the regular runs' checkpoint is not touched

    resumed = _json(run(project_file, *args, "--json"))
    assert resumed["run_status"] == "success"
    assert resumed["rows_read"] < len(IN_WINDOW)  # it did not start over
    runs = _json(run(project_file, "runs", "sync", "--json"))
    assert runs[1]["run_status"] == "failed" and "abandoned" in runs[1]["error_message"]
    rows = {r["id"]: r for r in snapshot(engine, "orders_copy")}
    source = {r["id"]: r for r in snapshot(engine, "orders")}
    assert all(rows[i] == source[i] for i in IN_WINDOW)
    assert rows[25]["customer"] == "outside"
    assert project.backfill_checkpoint("sync") is None
    assert [c.change for c in project.watermark_history("sync")] == ["run"]

    # --resume with nothing unfinished says so.
    nothing = run(project_file, "backfill", "sync", "--resume")
    assert nothing.returncode == 2 and "no unfinished backfill" in nothing.stderr
