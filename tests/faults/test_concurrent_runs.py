"""Two runs of one job at once, with the control store on SQLite, PostgreSQL and MariaDB.

The second run is refused by the control store's unique key before it touches anything; a run
whose process died is found by the next one (same host, dead pid), failed as abandoned, and
resumed from its checkpoint.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

from highmark import Project, RunStatus
from highmark.lease import this_host
from tests.faults import harness
from tests.faults.invariants import (
    JOB,
    MarkLog,
    assert_nothing_leaked,
    assert_target_equals_source,
    assert_target_is_prefix,
    reaped,
    runs,
    write_job,
)
from tests.helpers import create_orders, insert_orders, order, snapshot

TARGET = "orders_copy"


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=harness.WAIT_LIMIT_SECONDS)
    return process.returncode, out, err


def test_second_run_is_refused_while_the_first_is_live(
    db_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 8)])
    path = write_job(write_project, db_url)
    project = Project.load(path)
    marks = MarkLog(project)

    pause = harness.Pause(tmp_path, "after_target_commit")
    with reaped(harness.start(path, "run", JOB, env=pause.env)) as a:
        try:
            pause.wait(a)
            (live,) = runs(project)
            assert live.run_status is RunStatus.RUNNING
            assert (live.host, live.pid) == (this_host(), a.pid)
            before = snapshot(engine, TARGET)
            assert len(before) == 3  # A's first batch is committed in the target

            b = harness.run(path, "run", JOB)

            assert b.returncode == 1, b.stderr
            lines = b.stderr.strip().splitlines()
            assert len(lines) == 1, b.stderr
            assert "already running" in lines[0]
            assert f"run {live.run_id} " in lines[0]
            assert this_host() in lines[0]
            assert f"pid {a.pid}" in lines[0]
            assert snapshot(engine, TARGET) == before
            assert [r.run_id for r in runs(project)] == [live.run_id]
            assert marks.check() is None
        finally:
            pause.release()
        code, out, err = _finish(a)

    assert code == 0, out + err
    (first,) = runs(project)
    assert first.run_status is RunStatus.SUCCESS
    assert (first.rows_read, first.rows_written) == (7, 7)
    assert_target_equals_source(engine)
    marks.check()

    insert_orders(engine, table, [order(i) for i in range(8, 10)])
    third = project.run(JOB)
    assert third.run_status is RunStatus.SUCCESS, third.error_message
    assert (third.rows_read, third.rows_written, third.rows_updated) == (2, 2, 0)
    assert_target_equals_source(engine)
    marks.check()
    assert sum(r.rows_written for r in runs(project)) == 9
    assert_nothing_leaked(project, b.stdout, b.stderr, out, err)


def test_a_killed_run_is_found_abandoned_and_resumed(
    db_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 4)])
    path = write_job(write_project, db_url)
    project = Project.load(path)
    marks = MarkLog(project)
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    committed = marks.check()
    assert committed is not None
    insert_orders(engine, table, [order(i) for i in range(4, 14)])

    # Stop A inside its third batch: batches 1 and 2 are committed and checkpointed, batch 3's
    # target transaction is open (on SQLite it holds the file's write lock). SIGKILL there.
    pause = harness.Pause(tmp_path, "mid_batch", 3)
    with reaped(harness.start(path, "run", JOB, env=pause.env)) as a:
        try:
            pause.wait(a)
            a.kill()
            a.wait()
        finally:
            pause.release()
    _, dead = runs(project)
    checkpoint = project.checkpoint(JOB)
    assert checkpoint is not None
    assert (checkpoint["run_id"], checkpoint["batch_number"]) == (dead.run_id, 2)
    assert dead.run_status is RunStatus.RUNNING and dead.pid == a.pid
    assert assert_target_is_prefix(engine) == 3 + 6
    assert marks.check() == committed  # nothing moved

    resumed = harness.run(path, "run", JOB)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    first, abandoned, last = runs(project)
    assert abandoned.run_id == dead.run_id
    assert abandoned.run_status is RunStatus.FAILED
    assert abandoned.error_message is not None and "abandoned" in abandoned.error_message
    assert str(a.pid) in abandoned.error_message and this_host() in abandoned.error_message
    assert abandoned.error_details is not None
    assert abandoned.error_details["reason"] == "abandoned"
    assert abandoned.finished_at is not None
    assert last.run_status is RunStatus.SUCCESS
    # Resumed at A's checkpoint: only the rows after its second batch are read again.
    assert (last.rows_read, last.rows_written, last.rows_updated) == (4, 4, 0)
    assert_target_equals_source(engine)
    marks.check()
    assert project.checkpoint(JOB) is None
    # Counted once each: A's checkpointed counts plus the resumed run's cover every row.
    assert [r.rows_written for r in (first, abandoned, last)] == [3, 6, 4]
    assert sum(r.rows_written for r in runs(project)) == 13
    assert_nothing_leaked(project, resumed.stdout, resumed.stderr)
