"""A job's `reconcile` schedule under the worker: each fire time claimed once, the reconcile a run
of the job (triggered by the scheduler) that repairs what differs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text

from highmark import Project
from highmark.reconcile_schedule import TASK_PREFIX, start_due
from tests.helpers import copy_job, seed_orders, snapshot

JOB = "sync"


def test_a_due_reconcile_runs_once_and_repairs(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine = engine_for(url)
    seed_orders(engine, 40)
    job = copy_job(reconcile={"schedule": "* * * * *", "repair": True})
    project = Project.load(write_project(control=url, connections={"db": url}, jobs={JOB: job}))
    assert project.run(JOB).run_status.value == "success"
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM orders WHERE id = 3"))

    assert start_due(project.config, project.store, "w1") == []  # first seen: next fire time
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE etl_maintenance SET last_run_at = '2000-01-01 00:00:00' WHERE task = :t"),
            {"t": TASK_PREFIX + JOB},
        )
    started = start_due(project.config, project.store, "w1")
    assert start_due(project.config, project.store, "w2") == []  # claimed once
    assert len(started) == 1
    started[0].join(timeout=120)
    assert started[0].exitcode == 0
    latest = project.runs(JOB, limit=1)[0]
    assert latest.triggered_by == "scheduler" and latest.rows_deleted == 1
    assert any("reconcile --repair" in note for note in latest.notes or [])
    assert snapshot(engine, "orders") == snapshot(engine, "orders_copy")
