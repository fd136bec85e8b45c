"""SIGTERM and SIGINT in the middle of `highmark run`, on SQLite and PostgreSQL.

The signal lands while the run is paused right after its second batch committed in the target.
The run finishes that batch (its checkpoint is saved), stops at the next batch boundary, ends
``cancelled`` with exit code 143 (SIGTERM) or 130 (SIGINT) and leaves the watermark where it was;
the next run resumes from the checkpoint and reads only the rows that remain.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from highmark import Counts, JobSpec, Project, RunRecord, RunStatus
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
from tests.helpers import create_orders, insert_orders, order


def _pending(pid: int) -> int:
    """The signals pending for the whole process (not yet taken by any of its threads)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no ShdPnd in /proc/{pid}/status")


def deliver(process: subprocess.Popen[str], signum: signal.Signals) -> None:
    """Send ``signum`` and wait until the process has taken it.

    Python's handler then runs at the main thread's next bytecode, which is before the paused run
    can notice its release file: the cancellation is seen at the next batch boundary, always.
    """
    process.send_signal(signum)
    deadline = time.monotonic() + harness.WAIT_LIMIT_SECONDS
    while _pending(process.pid) & (1 << (signum - 1)):
        assert time.monotonic() < deadline, "the signal was never delivered"
        time.sleep(0.005)


class _Watch:
    """Reads the job's checkpoint each time the run counts a batch (the previous batch's)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.checkpoints: list[dict[str, Any]] = []

    def started(self, job: JobSpec, run_id: int, description: str) -> None:
        pass

    def progressed(self, counts: Counts, batch_number: int, detail: str | None = None) -> None:
        checkpoint = self.project.checkpoint(JOB)
        assert checkpoint is not None
        self.checkpoints.append(checkpoint)

    def finished(self, run: RunRecord) -> None:
        pass


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_a_signal_cancels_at_the_batch_boundary_and_the_next_run_resumes(
    signum: signal.Signals,
    exit_code: int,
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
    insert_orders(engine, table, [order(i) for i in range(4, 16)])  # four batches of three

    pause = harness.Pause(tmp_path, "after_target_commit", 2)
    with reaped(harness.start(path, "run", JOB, env=pause.env)) as process:
        try:
            pause.wait(process)
            deliver(process, signum)
        finally:
            pause.release()
        out, err = process.communicate(timeout=harness.WAIT_LIMIT_SECONDS)

    assert process.returncode == exit_code, out + err
    _, cancelled = runs(project)
    assert cancelled.run_status is RunStatus.CANCELLED
    assert cancelled.finished_at is not None
    assert cancelled.error_details is not None
    assert cancelled.error_details["reason"] == "cancelled"
    assert cancelled.error_details["signal"] == signum
    assert signum.name in (cancelled.error_message or "")
    assert (cancelled.rows_read, cancelled.rows_written, cancelled.rows_updated) == (6, 6, 0)
    checkpoint = project.checkpoint(JOB)
    assert checkpoint is not None
    assert checkpoint["run_id"] == cancelled.run_id
    assert checkpoint["batch_number"] >= 2
    assert checkpoint["total_rows_processed"] == 6
    assert marks.check() == committed  # the watermark did not move
    assert cancelled.watermark_start == committed.last_value_timestamp
    assert assert_target_is_prefix(engine) == 3 + 6

    watch = _Watch(project)
    last = project.run(JOB, observer=watch)

    assert last.run_status is RunStatus.SUCCESS, last.error_message
    # While it ran, the checkpoint was first the cancelled run's, then its own, in recovery mode.
    assert [(c["run_id"], c["recovery_mode"]) for c in watch.checkpoints] == [
        (cancelled.run_id, False),
        (last.run_id, True),
    ]
    assert (last.rows_read, last.rows_written, last.rows_updated) == (6, 6, 0)
    assert_target_equals_source(engine)
    mark = marks.check()
    assert mark is not None and mark.last_value_integer == 15
    assert project.checkpoint(JOB) is None
    assert sum(r.rows_written for r in runs(project)) == 15
    assert_nothing_leaked(project, out, err)
