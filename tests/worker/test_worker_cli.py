"""The worker's command line and the commands around it.

* `worker --once` starts what is due, waits, and exits 0 when every run it started succeeded,
  1 otherwise;
* a worker that was down for several fire times runs the job once, late, and says so (the slot's
  `missed`, the run's notes, the log);
* SQLite takes one worker at a time: a second one says so in one line and exits 2;
* `highmark cancel JOB_ID` and `cancel RUN_ID` stop a run in a worker's child (PostgreSQL);
* `highmark jobs` (and `--json`) shows each job's next due time and last result;
* `highmark disable` makes workers skip a job, `enable` brings it back; the override holds across
  later commands until the project file's is_active for that job changes.

Workers are real processes; the short commands around them run in this process through the same
click entry point (a fresh interpreter per command would cost a second each).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import Engine, Table

from highmark import Project
from highmark.cli import cli
from highmark.store.tables import etl_jobs
from tests.faults.invariants import assert_target_is_prefix
from tests.worker.support import (
    YEARLY,
    Workers,
    failpoint_env,
    job,
    jobs,
    make_due,
    reached,
    runs,
    slots,
    wait_until,
    write_project,
)


def highmark(project: Path, *args: str) -> Result:
    """`highmark --project PROJECT ARGS…`, in this process."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return CliRunner().invoke(cli, ["--project", str(project), *args])
    finally:  # the command points the root logger at its captured stderr: undo that
        root.handlers[:] = handlers
        root.setLevel(level)


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data.db'}"


def _project(tmp_path: Path, url: str, specs: dict[str, dict[str, Any]], **worker: Any) -> Path:
    path = write_project(
        tmp_path / "highmark.yml",
        control=url,
        connections={"db": url},
        jobs=specs,
        worker=worker or None,
    )
    Project.load(path)
    return path


# --------------------------------------------------------------------------- --once


def test_once_exits_0_when_every_run_it_started_succeeded_and_1_when_one_failed(
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    url = _sqlite(tmp_path)
    engine = engine_for(url)
    orders(engine, 5)
    project = _project(
        tmp_path,
        url,
        {
            "good": job(schedule=YEARLY),
            "broken": job("no_such_table", "broken_copy", schedule=YEARLY),
        },
    )

    make_due(engine, "good")
    ok = workers.start(project, "--once", "--worker-id", "w")
    assert ok.wait() == 0, ok.log()
    assert [(r["job_id"], r["run_status"]) for r in runs(engine)] == [("good", "success")]

    make_due(engine, "good")
    make_due(engine, "broken")
    failing = workers.start(project, "--once", "--worker-id", "w")
    assert failing.wait() == 1, failing.log()
    assert sorted((r["job_id"], r["run_status"]) for r in runs(engine)[1:]) == [
        ("broken", "failed"),
        ("good", "success"),
    ]
    assert "1 succeeded, 1 failed" in failing.log()
    assert {r["triggered_by"] for r in runs(engine)} == {"scheduler"}

    idle = workers.start(project, "--once", "--worker-id", "w")  # nothing is due
    assert idle.wait() == 0, idle.log()
    assert len(runs(engine)) == 3


def test_a_worker_that_was_down_runs_the_job_once_late_and_says_how_many_slots_it_stands_for(
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    url = _sqlite(tmp_path)
    engine = engine_for(url)
    orders(engine, 5)
    project = _project(tmp_path, url, {"hourly": job(schedule="0 * * * *")})
    # The worker was down for five fire times and more: the job was due five hours ago.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        conn.execute(etl_jobs.update().values(next_due_at=hour - timedelta(hours=5)))

    worker = workers.start(project, "--once", "--worker-id", "w")
    assert worker.wait() == 0, worker.log()

    (slot,) = slots(engine)
    (run,) = runs(engine)
    assert slot["scheduled_for"] >= hour  # the latest fire time that was due, not the first
    missed = round((slot["scheduled_for"] - (hour - timedelta(hours=5))) / timedelta(hours=1))
    assert missed >= 5
    assert (slot["status"], slot["missed"]) == ("done", missed)
    assert run["run_status"] == "success"
    assert run["scheduled_for"] == slot["scheduled_for"]
    assert run["started_at"] > slot["scheduled_for"]  # late
    assert any(f"stands in for {missed} missed fire time(s)" in n for n in run["notes"])
    assert f"stands in for {missed} missed" in worker.log()
    assert jobs(engine)["hourly"]["next_due_at"] > run["started_at"]  # next due in the future


# --------------------------------------------------------------------------- SQLite


def test_sqlite_takes_one_worker_at_a_time(
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    url = _sqlite(tmp_path)
    orders(engine_for(url), 1)
    project = _project(tmp_path, url, {"sync": job(schedule=YEARLY)})
    first = workers.start(project, "--worker-id", "first")
    wait_until(lambda: "worker first started" in first.log(), "the first worker", watch=[first])

    second = workers.start(project, "--worker-id", "second")
    assert second.wait() == 2
    (line,) = second.log().splitlines()
    assert line.startswith("highmark: error: another worker (first) is using the SQLite")
    assert "one worker at a time" in line
    assert first.alive()
    assert first.stop() == 0

    again = workers.start(project, "--once", "--worker-id", "third")  # free again
    assert again.wait() == 0, again.log()


# --------------------------------------------------------------------------- cancel


@pytest.mark.parametrize("by", ["job", "run"])
def test_cancel_stops_a_run_in_a_worker(
    by: str,
    pg_url: str,
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    engine = engine_for(pg_url)
    orders(engine, 9)
    project = _project(tmp_path, pg_url, {"sync": job(schedule=YEARLY)})
    env, release = failpoint_env(tmp_path, "after_target_commit")
    worker = workers.start(project, "--worker-id", "w", env=env)
    make_due(engine, "sync")
    wait_until(lambda: reached(release), "the run to pause", watch=[worker])
    (live,) = runs(engine)

    asked = highmark(project, "cancel", "sync" if by == "job" else str(live["run_id"]))
    assert asked.exit_code == 0, asked.output
    assert f"asked run {live['run_id']} of sync" in asked.stdout
    requested = Project.load(project, sync=False).store.now()
    # The run's heartbeat reads the request; after the heartbeat that follows the first one
    # written since the request, the run has surely taken it in.
    first = wait_until(lambda: _heartbeat_after(engine, requested), "a heartbeat")
    wait_until(lambda: _heartbeat_after(engine, first), "another heartbeat")
    release.write_text("go")

    slot = wait_until(
        lambda: next((s for s in slots(engine) if s["status"] == "cancelled"), None),
        "the slot to be cancelled",
        watch=[worker],
    )
    assert worker.stop() == 0
    (run,) = runs(engine)
    assert run["run_status"] == "cancelled"
    assert run["cancel_requested"] is True
    assert run["error_details"]["reason"] == "cancelled"
    assert "highmark cancel" in run["error_message"]
    assert slot["last_run_id"] == run["run_id"]
    assert assert_target_is_prefix(engine) == 3
    assert jobs(engine)["sync"]["checkpoint_data"]["run_id"] == run["run_id"]

    nothing = highmark(project, "cancel", "sync")
    assert nothing.exit_code == 2
    assert "no running run" in nothing.stderr


def _heartbeat_after(engine: Engine, moment: datetime) -> datetime | None:
    (run,) = runs(engine)
    beat: datetime | None = run["heartbeat_at"]
    return beat if beat is not None and beat > moment else None


# --------------------------------------------------------------------------- jobs


def test_jobs_shows_the_next_due_time_and_the_last_result(
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    url = _sqlite(tmp_path)
    engine = engine_for(url)
    orders(engine, 3)
    project = _project(
        tmp_path,
        url,
        {
            "ran": job(schedule=YEARLY),
            "broken": job("no_such_table", "broken_copy", schedule=YEARLY),
            "never": job(
                target="never_copy", schedule="0 3 * * *", schedule_timezone="Europe/Berlin"
            ),
        },
    )
    make_due(engine, "ran")
    make_due(engine, "broken")
    assert workers.start(project, "--once", "--worker-id", "w").wait() == 1

    listed = highmark(project, "jobs", "--json")
    assert listed.exit_code == 0, listed.output
    by_id = {j["job_id"]: j for j in json.loads(listed.stdout)}
    stored = jobs(engine)
    for job_id in ("ran", "broken", "never"):
        shown = datetime.fromisoformat(by_id[job_id]["next_due_at"].replace("Z", "+00:00"))
        assert shown == stored[job_id]["next_due_at"]
        assert shown > datetime.now(UTC)
    ran = runs(engine, "ran")[-1]
    assert (by_id["ran"]["last_run_status"], by_id["ran"]["last_run_id"]) == (
        "success",
        ran["run_id"],
    )
    assert by_id["broken"]["last_run_status"] == "failed"
    assert by_id["never"]["last_run_status"] is None
    assert by_id["never"]["schedule_timezone"] == "Europe/Berlin"
    # 03:00 in Berlin is 01:00 or 02:00 UTC, depending on the season.
    assert stored["never"]["next_due_at"].hour in (1, 2)

    table = highmark(project, "jobs")
    assert table.exit_code == 0, table.output
    rows = {line.split()[1]: line for line in table.stdout.splitlines() if "│" in line}
    assert stored["ran"]["next_due_at"].strftime("%Y-%m-%d %H:%M:%S") in rows["ran"]
    assert "success" in rows["ran"]
    assert "failed" in rows["broken"]
    assert "never run" in rows["never"]
    assert "0 3 * * * Europe/Berlin" in rows["never"]


# --------------------------------------------------------------------------- enable/disable


def test_disable_and_enable_override_the_file_until_the_file_changes(
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    url = _sqlite(tmp_path)
    engine = engine_for(url)
    orders(engine, 3)
    specs = {"a": job(target="a_copy", schedule=YEARLY), "b": job(target="b_copy", schedule=YEARLY)}
    project = _project(tmp_path, url, specs)

    def once() -> list[str]:
        """Make both jobs due, run a worker once; the jobs it ran."""
        before = len(runs(engine))
        make_due(engine, "a")
        make_due(engine, "b")
        worker = workers.start(project, "--once", "--worker-id", "w")
        assert worker.wait() == 0, worker.log()
        return sorted(r["job_id"] for r in runs(engine)[before:])

    def state(job_id: str) -> tuple[bool, bool | None]:
        row = jobs(engine)[job_id]
        return row["is_active"], row["is_active_override"]

    disabled = highmark(project, "disable", "a")
    assert disabled.exit_code == 0, disabled.output
    assert "a: disabled" in disabled.stdout
    assert once() == ["b"]
    assert [s["job_id"] for s in slots(engine)] == ["b"]  # no slot for a disabled job
    # Later commands load the unchanged file: the override holds.
    assert highmark(project, "jobs").exit_code == 0
    assert state("a") == (False, False)
    assert once() == ["b"]

    enabled = highmark(project, "enable", "a")
    assert enabled.exit_code == 0, enabled.output
    assert "a: enabled; next due" in enabled.stdout
    assert state("a") == (True, True)
    assert once() == ["a", "b"]

    # The file changes its mind about `a`: the file wins again, whatever was overridden.
    assert highmark(project, "disable", "a").exit_code == 0
    _edit(project, "a", is_active=False)
    assert highmark(project, "jobs").exit_code == 0
    assert state("a") == (False, None)
    assert highmark(project, "enable", "a").exit_code == 0
    assert state("a") == (True, True)
    assert highmark(project, "jobs").exit_code == 0
    assert state("a") == (True, True)  # the file did not change since
    _edit(project, "a", is_active=True)
    assert highmark(project, "jobs").exit_code == 0
    assert state("a") == (True, None)
    assert once() == ["a", "b"]


def _edit(project: Path, job_id: str, **changes: Any) -> None:
    document = yaml.safe_load(project.read_text())
    document["jobs"][job_id].update(changes)
    project.write_text(yaml.safe_dump(document, sort_keys=False))
