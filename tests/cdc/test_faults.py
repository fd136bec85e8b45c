"""Doing harm to CDC runs: kill -9 mid-snapshot, mid-apply, between the target's commit and the
log's confirmation; two runs at once; the source's connections killed mid-run; the log taken away
behind highmark's back. After each, the target ends equal to the source and no run counted a
change twice."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from highmark import Project
from tests.cdc.support import (
    JOB,
    assert_equal,
    eight_transactions,
    execute,
    run_ok,
    slot_name,
    write_cdc_project,
)
from tests.faults.harness import Pause, kill_env, run, start
from tests.faults.invariants import reaped
from tests.helpers import create_orders, insert_orders, order


def _setup(
    url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path], rows: int
) -> tuple[Engine, Path]:
    engine = engine_for(url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, rows + 1)])
    return engine, write_cdc_project(write_project, url)


def _runs(project: Path) -> list[dict[str, Any]]:
    result = run(project, "runs", JOB, "--json")
    assert result.returncode == 0, result.stderr
    return list(reversed(json.loads(result.stdout)))


def _again(project: Path) -> dict[str, Any]:
    result = run(project, "run", JOB)
    assert result.returncode == 0, result.stderr
    return _runs(project)[-1]


@pytest.mark.parametrize("point", ["mid_batch:2", "after_target_commit:2", "before_log_confirm:1"])
def test_kill_while_applying(
    cdc_url: str,
    point: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    if point.startswith("before_log_confirm") and cdc_url.startswith("mysql"):
        pytest.skip("MySQL/MariaDB keep no position for highmark: nothing to confirm")
    engine, project = _setup(cdc_url, engine_for, write_project, 12)
    assert run(project, "run", JOB).returncode == 0
    eight_transactions(engine)
    name, nth = point.split(":")
    killed = run(project, "run", JOB, env=kill_env(name, int(nth)))
    assert killed.returncode != 0
    resumed = _again(project)
    assert resumed["run_status"] == "success"
    assert_equal(engine)
    runs = _runs(project)
    assert runs[1]["run_status"] == "failed" and "abandoned" in runs[1]["error_message"]
    # Every change is counted by at most one run: 8 inserts, 8 deletes over the two runs.
    assert sum(r["rows_written"] for r in runs[1:]) <= 8
    assert sum(r["rows_deleted"] for r in runs[1:]) <= 8


def test_kill_mid_snapshot_resumes_it(
    cdc_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine, project = _setup(cdc_url, engine_for, write_project, 14)
    killed = run(project, "run", JOB, env=kill_env("after_target_commit", 2))
    assert killed.returncode != 0
    execute(engine, "UPDATE orders SET customer = 'changed meanwhile' WHERE id = 2")
    execute(engine, "DELETE FROM orders WHERE id = 13")
    resumed = _again(project)
    assert resumed["run_status"] == "success"
    assert_equal(engine)
    checkpoint_note = " ".join(resumed["notes"] or [])
    assert "snapshot loaded" in checkpoint_note


def test_two_runs_at_once(
    cdc_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    engine, project = _setup(cdc_url, engine_for, write_project, 6)
    assert run(project, "run", JOB).returncode == 0
    eight_transactions(engine)
    pause = Pause(tmp_path, "before_log_confirm")
    with reaped(start(project, "run", JOB, env=pause.env)) as first:
        pause.wait(first)
        second = run(project, "run", JOB)
        assert second.returncode == 1
        assert "already running" in second.stderr
        pause.release()
        first.wait(timeout=120)
        assert first.returncode == 0
    assert_equal(engine)


def test_source_connections_killed_mid_run(
    cdc_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    engine, project = _setup(cdc_url, engine_for, write_project, 6)
    assert run(project, "run", JOB).returncode == 0
    eight_transactions(engine)
    pause = Pause(tmp_path, "after_target_commit")
    with reaped(start(project, "run", JOB, env=pause.env)) as child:
        pause.wait(child)
        _kill_source_sessions(engine)
        pause.release()
        child.wait(timeout=120)
    outcome = _runs(project)[-1]
    if outcome["run_status"] == "failed":
        assert outcome["error_details"]["retryable"] is True, outcome["error_message"]
    assert _again(project)["run_status"] == "success"
    assert_equal(engine)


def _kill_source_sessions(engine: Engine) -> None:
    """What a source restart does to highmark's sessions: they are gone."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    "application_name = 'highmark-source' AND datname = current_database()"
                )
            )
            return
        me = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        for row in conn.execute(text("SHOW PROCESSLIST")).mappings().all():
            if row["Id"] != me and (
                row["db"] == engine.url.database or row["Command"] == "Binlog Dump"
            ):
                conn.execute(text(f"KILL {int(row['Id'])}"))


def _purge_binlogs(conn: Any) -> None:
    """Purge every binlog file but the current one. MariaDB keeps a file until its binlog
    checkpoint has passed it (crash recovery), which takes a moment after a rotation."""
    conn.execute(text("FLUSH BINARY LOGS"))
    current = conn.execute(text("SHOW MASTER STATUS")).mappings().one()["File"]
    for _ in range(100):
        conn.execute(text(f"PURGE BINARY LOGS TO '{current}'"))
        if len(conn.execute(text("SHOW BINARY LOGS")).all()) == 1:
            return
        time.sleep(0.1)
    raise AssertionError("the old binlog files could not be purged")


def test_log_lost_behind_our_back(
    cdc_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine, path = _setup(cdc_url, engine_for, write_project, 5)
    project = Project.load(path)
    run_ok(project)
    execute(engine, "DELETE FROM orders WHERE id = 1")
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"SELECT pg_drop_replication_slot('{slot_name(cdc_url)}')"))
        else:
            _purge_binlogs(conn)
        conn.commit()
    execute(engine, "DELETE FROM orders WHERE id = 2")
    failed = project.run(JOB)
    assert failed.run_status.value == "failed"
    assert failed.error_details is not None and failed.error_details["retryable"] is False
    assert "--full-refresh" in (failed.error_message or "")
    again = run_ok(project, full_refresh=True)
    assert again.rows_deleted == 2
    assert_equal(engine)
