"""Harm done to real workers and their runs, on PostgreSQL.

* kill -9 of a worker mid-run: its run dies with it; a second worker abandons the run, re-claims
  the slot once the lease has lapsed, and finishes it as attempt 2;
* a worker that stalls past its lease while its run succeeds does not make the slot run twice, and
  a run whose worker lost its claim before the run started does not start;
* timeouts: a run past timeout_seconds stops at its next batch and ends failed/timeout
  (retryable) and is retried; a run that ignores the request is killed and still ends
  failed/timeout;
* retries: a retryable failure is retried as attempts 2, 3… each its own run row, after growing
  backoff delays; a permanent failure is not retried; a failed manual run is never retried;
* SIGTERM drains: the worker claims nothing more; a run that finishes within the grace period ends
  success and the worker exits 0; one that does not is asked to stop, ends cancelled with its
  checkpoint saved, and the worker exits 0.

Every wait polls for a condition; every paused run waits at a failpoint, inherited by the worker's
forked children from its environment (HIGHMARK_FAILPOINT=POINT:1:pause pauses each run the first
time it reaches POINT, until the release file exists).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, text

from highmark import Project
from highmark.errors import ClaimLostError
from highmark.store.queue import WorkQueue
from highmark.store.store import RunHandle
from highmark.store.tables import etl_job_slots
from tests.faults import harness
from tests.faults.invariants import assert_target_equals_source, assert_target_is_prefix
from tests.worker.support import (
    YEARLY,
    Workers,
    failpoint_env,
    job,
    jobs,
    make_due,
    pid_alive,
    reached,
    runs,
    sleeping,
    slots,
    terminate_backends,
    threads,
    wait_until,
    write_project,
)

JOB = "orders_sync"


def _project(tmp_path: Path, url: str, worker: dict[str, Any] | None = None, **spec: Any) -> Path:
    """A project with one job that runs when a test makes it due; its control store is ready."""
    path = write_project(
        tmp_path / "highmark.yml",
        control=url,
        connections={"db": url},
        jobs={JOB: job(schedule=YEARLY, **spec)},
        worker=worker,
    )
    Project.load(path)
    return path


def _slot_is(engine: Engine, *statuses: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        found = slots(engine, JOB)
        return found[-1] if found and found[-1]["status"] in statuses else None

    return probe


def _run(engine: Engine, attempt: int, *statuses: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        return next(
            (
                r
                for r in runs(engine, JOB)
                if r["attempt"] == attempt and r["run_status"] in statuses
            ),
            None,
        )

    return probe


def _paused_anew(release: Path, seen: set[int]) -> Callable[[], int | None]:
    """The pid of a run paused at the failpoint that is not one of ``seen``."""

    def probe() -> int | None:
        pid = reached(release)
        return pid if pid is not None and pid not in seen else None

    return probe


# --------------------------------------------------------------------------- dead and stalled


def test_a_killed_worker_loses_its_claim_and_its_run_is_abandoned_and_retried(
    pg_url: str,
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    engine = engine_for(pg_url)
    orders(engine, 9)
    project = _project(tmp_path, pg_url)
    env, release = failpoint_env(tmp_path, "after_target_commit")
    first = workers.start(project, "--worker-id", "first", env=env)
    make_due(engine, JOB)
    child = wait_until(lambda: reached(release), "the run to pause", watch=[first])

    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    wait_until(lambda: not pid_alive(child), "the run to die with its worker")
    (orphan,) = runs(engine)
    assert (orphan["run_status"], orphan["attempt"], orphan["worker_id"]) == (
        "running",
        1,
        "first",
    )

    second = workers.start(project, "--worker-id", "second")
    wait_until(_slot_is(engine, "done"), "the slot to be done", watch=[second])
    assert second.stop() == 0

    abandoned, retried = runs(engine)
    assert abandoned["run_id"] == orphan["run_id"]
    assert abandoned["run_status"] == "failed"
    assert abandoned["error_details"]["reason"] == "abandoned"
    assert "abandoned" in abandoned["error_message"]
    assert (retried["run_status"], retried["attempt"], retried["worker_id"]) == (
        "success",
        2,
        "second",
    )
    assert retried["scheduled_for"] == orphan["scheduled_for"]
    assert {r["triggered_by"] for r in (abandoned, retried)} == {"scheduler"}
    (slot,) = slots(engine)
    assert (slot["attempt"], slot["last_run_id"]) == (2, retried["run_id"])
    assert_target_equals_source(engine)


def test_a_worker_that_stalls_past_its_lease_does_not_make_its_slot_run_twice(
    pg_url: str,
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    """The first worker is stopped (SIGSTOP) while its run works; its claim lapses; the run
    succeeds meanwhile. The second worker finds the lapsed claim, sees the run succeeded and
    marks the slot done instead of running it again."""
    engine = engine_for(pg_url)
    orders(engine, 9)
    project = _project(tmp_path, pg_url)
    env, release = failpoint_env(tmp_path, "after_target_commit")
    first = workers.start(project, "--worker-id", "first", env=env)
    make_due(engine, JOB)
    wait_until(lambda: reached(release), "the run to pause", watch=[first])
    first.signal(signal.SIGSTOP)
    try:
        second = workers.start(project, "--worker-id", "second")
        release.write_text("go")
        wait_until(_run(engine, 1, "success"), "the run to succeed", watch=[second])
        slot = wait_until(_slot_is(engine, "done"), "the slot to be settled", watch=[second])
    finally:
        first.signal(signal.SIGCONT)

    (run,) = runs(engine)
    assert slot["last_run_id"] == run["run_id"]
    assert slot["worker_id"] == "first"  # settled, not claimed again
    assert (run["attempt"], run["worker_id"]) == (1, "first")
    assert first.stop() == 0  # its own late bookkeeping changes nothing
    assert second.stop() == 0
    assert [r["run_id"] for r in runs(engine)] == [run["run_id"]]
    assert [s["status"] for s in slots(engine)] == ["done"]
    assert "lost" not in second.log()
    assert_target_equals_source(engine)


# --------------------------------------------------------------------------- timeouts


def test_a_run_past_its_timeout_stops_at_its_next_batch_fails_as_timeout_and_is_retried(
    pg_url: str,
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    engine = engine_for(pg_url)
    orders(engine, 9)
    # A long grace: the worker would kill the run only after timeout + grace.
    project = _project(
        tmp_path,
        pg_url,
        worker={"grace": "30s"},
        timeout_seconds=1,
        retry_count=1,
        retry_backoff={"base": "0.2s", "cap": "1s"},
    )
    env, release = failpoint_env(tmp_path, "after_target_commit")
    worker = workers.start(project, "--worker-id", "w", env=env)
    make_due(engine, JOB)
    child = wait_until(lambda: reached(release), "the run to pause", watch=[worker])
    # The run's timer thread ends once it has fired: then the run knows it timed out.
    wait_until(lambda: threads(child) == 2, "the timeout to fire", watch=[worker])
    release.write_text("go")

    slot = wait_until(_slot_is(engine, "done", "failed"), "the retry to end", watch=[worker])
    assert worker.stop() == 0

    first, retry = runs(engine)
    assert (first["run_status"], first["attempt"]) == ("failed", 1)
    details = first["error_details"]
    assert details["reason"] == "timeout"
    assert details["retryable"] is True
    assert details["exception_type"] == "RunTimeoutError"
    assert "timed out after 1s" in first["error_message"]
    assert (first["rows_written"], first["rows_read"]) == (3, 3)  # stopped after batch 1
    # The retry is its own run of the same slot: done if it beat the timeout, else failed again.
    assert (retry["attempt"], retry["triggered_by"]) == (2, "scheduler")
    assert retry["scheduled_for"] == first["scheduled_for"]
    assert slot["status"] == ("done" if retry["run_status"] == "success" else "failed")
    assert slot["last_run_id"] == retry["run_id"]


def test_a_run_stuck_inside_a_batch_is_killed_and_ends_failed_as_timeout(
    pg_url: str,
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    engine = engine_for(pg_url)
    orders(engine, 9)
    project = _project(tmp_path, pg_url, timeout_seconds=1, retry_count=0)
    # Paused inside the batch's target transaction: no batch boundary comes to notice the stop.
    env, release = failpoint_env(tmp_path, "mid_batch")
    worker = workers.start(project, "--worker-id", "w", env=env)
    make_due(engine, JOB)
    child = wait_until(lambda: reached(release), "the run to pause", watch=[worker])

    slot = wait_until(_slot_is(engine, "failed"), "the slot to fail", watch=[worker])
    assert not pid_alive(child)
    assert worker.stop() == 0

    (run,) = runs(engine)
    assert run["run_status"] == "failed"
    assert run["error_details"]["reason"] == "timeout"
    assert run["error_details"]["retryable"] is True
    assert "killed" in run["error_message"]
    assert slot["last_run_id"] == run["run_id"]
    assert "ignored its timeout; killing" in worker.log()
    assert assert_target_is_prefix(engine) == 0  # the open batch was rolled back


# --------------------------------------------------------------------------- retries


def test_a_retryable_failure_is_retried_with_growing_backoff_each_try_its_own_run(
    pg_url: str,
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    """Three tries lose their target connection (pg_terminate_backend while paused after their
    first batch, so their second batch fails); the fourth succeeds. Each try resumes from the
    checkpoint of the one before: five batches of three rows last four tries."""
    engine = engine_for(pg_url)
    orders(engine, 15)
    project = _project(tmp_path, pg_url, retry_count=3, retry_backoff={"base": "0.2s", "cap": "1s"})
    env, release = failpoint_env(tmp_path, "after_target_commit")
    worker = workers.start(project, "--worker-id", "w", env=env)
    make_due(engine, JOB)
    seen: set[int] = set()
    delays: list[timedelta] = []
    for attempt in (1, 2, 3):
        seen.add(wait_until(_paused_anew(release, seen), f"try {attempt} to pause", watch=[worker]))
        assert terminate_backends(engine, "highmark-target") == 1
        release.write_text("go")
        wait_until(_run(engine, attempt, "failed"), f"try {attempt} to fail", watch=[worker])
        release.unlink()  # the next try pauses again
        # The slot waits in retry_wait for its backoff (0.1 s at least): look often.
        waiting = wait_until(
            lambda n=attempt: _retry_wait(engine, n),
            f"retry {attempt} to wait",
            interval=0.01,
            watch=[worker],
        )
        delays.append(waiting["not_before"] - waiting["updated_at"])
    seen.add(wait_until(_paused_anew(release, seen), "try 4 to pause", watch=[worker]))
    release.write_text("go")
    slot = wait_until(_slot_is(engine, "done"), "the slot to be done", watch=[worker])
    assert worker.stop() == 0

    tries = runs(engine)
    assert [(r["attempt"], r["run_status"]) for r in tries] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "success"),
    ]
    assert {r["triggered_by"] for r in tries} == {"scheduler"}
    assert len({r["scheduled_for"] for r in tries}) == 1
    for failed in tries[:3]:
        assert failed["error_details"]["retryable"] is True, failed["error_message"]
    assert slot["last_run_id"] == tries[-1]["run_id"]
    # Exponential with jitter in [50 %, 100 %]: [0.1, 0.2), [0.2, 0.4), [0.4, 0.8) seconds.
    assert delays == sorted(delays) and len(set(delays)) == 3, delays
    assert all(timedelta(seconds=0.1) <= d <= timedelta(seconds=1) for d in delays), delays
    for before, after, delay in zip(tries, tries[1:], delays, strict=False):
        assert after["started_at"] >= before["finished_at"] + delay  # never before its backoff
    assert_target_equals_source(engine)


def _retry_wait(engine: Engine, attempt: int) -> dict[str, Any] | None:
    found = slots(engine, JOB)
    if found and found[-1]["status"] == "retry_wait" and found[-1]["attempt"] == attempt:
        return found[-1]
    return None


def test_a_permanent_failure_is_not_retried(
    pg_url: str,
    engine_for: Callable[[str], Engine],
    workers: Workers,
    tmp_path: Path,
) -> None:
    engine = engine_for(pg_url)
    project = _project(tmp_path, pg_url, retry_count=3)  # no orders table: a permanent error
    worker = workers.start(project, "--worker-id", "w")
    make_due(engine, JOB)
    slot = wait_until(_slot_is(engine, "failed"), "the slot to fail", watch=[worker])
    assert worker.stop() == 0

    (run,) = runs(engine)
    assert run["run_status"] == "failed"
    assert run["error_details"]["retryable"] is False
    assert (slot["attempt"], slot["last_run_id"]) == (1, run["run_id"])
    assert "not retried: permanent error" in worker.log()


def test_a_failed_manual_run_is_never_retried_by_a_worker(
    pg_url: str,
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    """The manual run fails with a retryable error (its target connection is terminated); a
    worker that runs afterwards starts nothing."""
    engine = engine_for(pg_url)
    orders(engine, 9)
    project = _project(tmp_path, pg_url, retry_count=3)
    pause = harness.Pause(tmp_path, "after_target_commit")
    manual = harness.start(project, "run", JOB, env=pause.env)
    try:
        pause.wait(manual)
        assert terminate_backends(engine, "highmark-target") == 1
    finally:
        pause.release()
    _, err = manual.communicate(timeout=harness.WAIT_LIMIT_SECONDS)
    assert manual.returncode == 1, err
    (failed,) = runs(engine)
    assert (failed["triggered_by"], failed["run_status"]) == ("manual", "failed")
    assert failed["error_details"]["retryable"] is True

    once = workers.start(project, "--once", "--worker-id", "w")
    assert once.wait() == 0, once.log()
    assert "0 succeeded, 0 failed, 0 cancelled, 0 to retry" in once.log()
    assert runs(engine) == [failed]
    assert slots(engine) == []
    assert jobs(engine)[JOB]["next_due_at"] > failed["finished_at"] + timedelta(days=1)


# --------------------------------------------------------------------------- SIGTERM


def test_sigterm_lets_a_run_finish_within_the_grace_period(
    pg_url: str,
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    engine = engine_for(pg_url)
    orders(engine, 9)
    project = write_project(
        tmp_path / "highmark.yml",
        control=pg_url,
        connections={"db": pg_url},
        jobs={JOB: job(schedule=YEARLY), "later": job(target="later_copy", schedule=YEARLY)},
        worker={"grace": "30s"},
    )
    Project.load(project)
    env, release = failpoint_env(tmp_path, "after_target_commit")
    worker = workers.start(project, "--worker-id", "w", env=env)
    make_due(engine, JOB)
    wait_until(lambda: reached(release), "the run to pause", watch=[worker])

    worker.signal(signal.SIGTERM)
    wait_until(lambda: "stopping; waiting up to 30.0s" in worker.log(), "the drain to begin")
    make_due(engine, "later")  # due while the worker drains: it claims nothing more
    assert worker.alive()
    release.write_text("go")
    assert worker.wait() == 0, worker.log()

    (run,) = runs(engine)
    assert (run["job_id"], run["run_status"]) == (JOB, "success")
    assert [(s["job_id"], s["status"]) for s in slots(engine)] == [(JOB, "done")]
    assert "asking" not in worker.log()
    assert_target_equals_source(engine)


def test_sigterm_cancels_a_run_that_outlasts_the_grace_period_and_keeps_its_checkpoint(
    pg_url: str,
    engine_for: Callable[[str], Engine],
    orders: Callable[[Engine, int], Table],
    workers: Workers,
    tmp_path: Path,
) -> None:
    engine = engine_for(pg_url)
    orders(engine, 9)
    project = _project(tmp_path, pg_url, worker={"grace": "1s"})
    env, release = failpoint_env(tmp_path, "after_target_commit")
    worker = workers.start(project, "--worker-id", "w", env=env)
    make_due(engine, JOB)
    child = wait_until(lambda: reached(release), "the run to pause", watch=[worker])

    worker.signal(signal.SIGTERM)
    asked = f"asking {JOB} (pid {child}) to stop"
    # Once the worker has logged its request and sleeps again, its kill() is done: the run
    # takes the signal before it can leave its pause.
    wait_until(lambda: asked in worker.log() and sleeping(worker.pid), "the request to stop")
    release.write_text("go")
    assert worker.wait() == 0, worker.log()

    (run,) = runs(engine)
    assert run["run_status"] == "cancelled"
    assert run["error_details"]["reason"] == "cancelled"
    assert run["error_details"]["signal"] == signal.SIGTERM
    assert "worker stopping" in run["error_message"]
    assert [s["status"] for s in slots(engine)] == ["cancelled"]
    checkpoint = jobs(engine)[JOB]["checkpoint_data"]
    assert checkpoint is not None
    assert (checkpoint["run_id"], checkpoint["batch_number"]) == (run["run_id"], 1)
    assert assert_target_is_prefix(engine) == 3
    with engine.connect() as conn:  # the watermark did not move
        assert conn.execute(text("SELECT count(*) FROM etl_watermarks")).scalar_one() == 0


def test_a_run_whose_worker_lost_the_claim_before_it_started_does_not_start(
    pg_url: str, engine_for: Callable[[str], Engine], tmp_path: Path
) -> None:
    """Worker a's claim lapses before its run's row is in (a slow fork, a stalled worker); worker
    b takes the slot over. a's run is refused at its start; b's starts."""
    engine = engine_for(pg_url)
    store = Project.load(_project(tmp_path, pg_url)).store
    queue = WorkQueue(store)
    make_due(engine, JOB)
    assert [e.job_id for e in queue.enqueue_due()] == [JOB]
    (lapsed,) = queue.claim("a", 1, timedelta(seconds=60))
    with engine.begin() as conn:
        conn.execute(etl_job_slots.update().values(lease_expires_at=lapsed.scheduled_for))
    (taken,) = queue.claim("b", 1, timedelta(seconds=60))
    assert (taken.scheduled_for, taken.attempt) == (lapsed.scheduled_for, 2)

    def start(worker_id: str, attempt: int) -> RunHandle | None:
        return store.start_run(
            JOB,
            triggered_by="scheduler",
            host="h",
            pid=1,
            watermark_start=None,
            scheduled_for=lapsed.scheduled_for,
            attempt=attempt,
            worker_id=worker_id,
        )

    with pytest.raises(ClaimLostError, match="no longer holds the slot"):
        start("a", 1)
    assert runs(engine) == []  # refused, nothing written
    handle = start("b", 2)
    assert handle is not None
    assert [(r["attempt"], r["worker_id"]) for r in runs(engine)] == [(2, "b")]
