"""A run whose owner vanished on another machine is abandoned once its lease has lapsed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from highmark import JobAlreadyRunningError, Project, RunStatus
from highmark.lease import LEASE
from highmark.store.tables import etl_job_runs
from tests.helpers import create_orders, insert_orders, order, snapshot


def _project(url: str, write_project: Callable[..., Path]) -> Project:
    job = {
        "load_type": "incremental",
        "source": {"connection": "db", "table": "orders"},
        "target": {"connection": "db", "table": "orders_copy"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
    }
    return Project.load(write_project(control=url, connections={"db": url}, jobs={"sync": job}))


def _foreign_run(project: Project, heartbeat_age: timedelta) -> int:
    handle = project.store.start_run(
        "sync", triggered_by="scheduler", host="worker-7.elsewhere", pid=4711, watermark_start=None
    )
    assert handle is not None
    last_heartbeat = project.store.now() - heartbeat_age
    with project.store.engine.begin() as conn:
        conn.execute(
            update(etl_job_runs)
            .where(etl_job_runs.c.run_id == handle.run_id)
            .values(heartbeat_at=last_heartbeat)
        )
    return handle.run_id


def test_lapsed_lease_on_another_host_is_abandoned(
    db_url: str, engine_for: Callable[[str], object], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    insert_orders(engine, create_orders(engine), [order(i) for i in range(1, 4)])  # type: ignore[arg-type]
    project = _project(db_url, write_project)
    stale = _foreign_run(project, LEASE + timedelta(seconds=30))

    run = project.run("sync")

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    old = project.store.get_run(stale)
    assert old.run_status is RunStatus.FAILED
    assert old.error_message is not None and "no heartbeat" in old.error_message
    assert old.error_details is not None and old.error_details["reason"] == "abandoned"
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")  # type: ignore[arg-type]


def test_live_lease_on_another_host_is_respected(
    tmp_path: Path, write_project: Callable[..., Path], engine_for: Callable[[str], object]
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine = engine_for(url)
    insert_orders(engine, create_orders(engine), [order(1)])  # type: ignore[arg-type]
    project = _project(url, write_project)
    live = _foreign_run(project, timedelta(seconds=5))

    with pytest.raises(JobAlreadyRunningError) as raised:
        project.run("sync")

    assert f"run {live}" in str(raised.value) and "worker-7.elsewhere" in str(raised.value)
    assert project.store.get_run(live).run_status is RunStatus.RUNNING
