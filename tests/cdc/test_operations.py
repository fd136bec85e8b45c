"""Operating CDC jobs: `check` names what the log needs, the lag shows in `status`, `cdc status`
and the metrics, an alert fires past `cdc.max_lag`, a job removed from the file says what to
drop, and `cdc drop` removes the slot and publication."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from highmark import Project
from tests.cdc.support import JOB, cdc_job, execute, run_ok, slot_name, write_cdc_project
from tests.faults.harness import run
from tests.helpers import create_orders, insert_orders, order


def _source(url: str, engine_for: Callable[[str], Engine]) -> Engine:
    engine = engine_for(url)
    insert_orders(engine, create_orders(engine), [order(i) for i in range(1, 4)])
    return engine


def test_check_status_metrics_and_drop(
    cdc_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = _source(cdc_url, engine_for)
    path = write_cdc_project(write_project, cdc_url)
    checked = run(path, "check", JOB, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    findings = {f["check"]: f["level"] for f in json.loads(checked.stdout)}
    wanted = {"wal_level", "replication role", "replica identity", "publication"}
    if engine.dialect.name == "mysql":
        wanted = {"log_bin", "binlog_format", "binlog_row_image", "replication privileges"}
    assert all(findings[c] == "pass" for c in wanted), findings
    assert run(path, "run", JOB).returncode == 0
    execute(engine, "UPDATE orders SET amount = amount + 1")

    status = run(path, "status", "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert row["cdc_lag_bytes"] > 0
    states = json.loads(run(path, "cdc", "status", "--json").stdout)
    assert states[0]["position"] and states[0]["lag_bytes"] > 0
    metrics = run(path, "metrics")
    assert f'highmark_cdc_lag_bytes{{job_id="{JOB}"}}' in metrics.stdout

    dropped = run(path, "cdc", "drop", JOB)
    assert dropped.returncode == 0, dropped.stderr
    if engine.dialect.name == "postgresql":
        assert "replication slot" in dropped.stdout and "publication" in dropped.stdout
        with engine.connect() as conn:
            assert (
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_replication_slots "
                        "WHERE database = current_database()"
                    )
                ).scalar()
                == 0
            )
    again = run(path, "run", JOB, "--json")
    assert again.returncode == 0, again.stderr
    assert "snapshot loaded" in " ".join(json.loads(again.stdout)["notes"])


def test_removed_job_says_what_to_drop(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    _source(pg_url, engine_for)
    path = write_cdc_project(write_project, pg_url)
    assert run(path, "run", JOB).returncode == 0
    write_project(control=pg_url, connections={"src": pg_url, "dst": pg_url}, jobs={})
    listed = run(path, "jobs")
    assert f"highmark cdc drop {JOB}" in listed.stderr
    states = json.loads(run(path, "cdc", "status", "--json").stdout)
    assert states[0]["in_project"] is False and states[0]["lag_bytes"] is not None
    assert run(path, "cdc", "drop", JOB).returncode == 0


def test_check_names_a_missing_replica_identity(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    execute(engine, "CREATE TABLE orders (id int NOT NULL, customer text)")
    path = write_cdc_project(write_project, pg_url)
    checked = run(path, "check", JOB, "--json", "--sql")
    assert checked.returncode == 1
    finding = next(f for f in json.loads(checked.stdout) if f["check"] == "replica identity")
    assert finding["level"] == "fail" and "REPLICA IDENTITY FULL" in finding["sql"]
    failed = run(path, "run", JOB)
    assert failed.returncode == 1 and "REPLICA IDENTITY FULL" in failed.stderr


@pytest.mark.parametrize("backend", ["postgresql"])
def test_lag_past_max_lag_alerts(
    backend: str,
    pg_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    engine = _source(pg_url, engine_for)
    inbox = tmp_path / "alerts.jsonl"
    path = write_project(
        control=pg_url,
        connections={"src": pg_url, "dst": pg_url},
        jobs={JOB: cdc_job(cdc={"max_lag": "1B", "slot": slot_name(pg_url)})},
    )
    text_ = path.read_text() + (
        f"alerts:\n  - type: command\n    command: [sh, -c, 'cat >> {inbox}']\n"
    )
    path.write_text(text_)
    project = Project.load(path)
    run_ok(project)
    execute(engine, "UPDATE orders SET amount = amount + 1")
    raised = project.check_alerts().raised
    assert [a.event for a in raised] == ["cdc_lag"]
    assert "cdc_lag" in inbox.read_text()
    assert project.check_alerts().raised == []  # once a day, not once a minute


def test_follow_keeps_applying_until_stopped(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    import signal
    import time

    from tests.cdc.support import assert_equal, differences
    from tests.faults.harness import start
    from tests.faults.invariants import reaped

    engine = _source(pg_url, engine_for)
    path = write_cdc_project(write_project, pg_url)

    def eventually(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except Exception:  # the target is created by the first run
                pass
            time.sleep(0.1)

    def caught_up() -> bool:
        return not any(differences(engine).values())

    def runs_succeeded() -> int:
        runs = json.loads(run(path, "runs", JOB, "--json").stdout)
        return sum(r["run_status"] == "success" for r in runs)

    with reaped(start(path, "run", JOB, "--follow", "--every", "0.2s")) as child:
        # Each change goes in after a run has ended, so that a later run must apply it (a change
        # made while the first run still reads the log would be taken by that run).
        eventually(lambda: caught_up() and runs_succeeded() >= 1)
        for i in (10, 11):
            execute(
                engine,
                f"INSERT INTO orders (id, customer, amount, updated_at) "
                f"VALUES ({i}, 'live', 1.00, '2024-02-01 00:00:00')",
            )
            eventually(caught_up)
        eventually(lambda: runs_succeeded() >= 2)
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)
        assert child.returncode == 143
    assert_equal(engine)
    runs = json.loads(run(path, "runs", JOB, "--json").stdout)
    assert len(runs) >= 2 and runs[-1]["run_status"] == "success"
