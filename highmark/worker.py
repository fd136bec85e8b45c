"""`highmark worker`: start runs when they are due, in child processes, many workers at once.

One loop: enqueue due cron slots, claim ready ones (up to ``concurrency`` at a time), run each in
a forked child process, renew the claims' leases, enforce timeouts, and record each outcome —
done, cancelled, failed, or retried later with exponential backoff for retryable failures. Every
event is one log line. SIGTERM (or Ctrl-C) stops claiming, lets running jobs finish for the grace
period, then asks them to stop (they end ``cancelled`` with their checkpoint saved).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from highmark import db
from highmark.config import ProjectConfig
from highmark.errors import ClaimLostError, ConfigError, HighmarkError, JobAlreadyRunningError
from highmark.lease import abandonment, this_host
from highmark.models import RunStatus, TriggeredBy
from highmark.run import CancelToken, ScheduledSlot, run_job
from highmark.scheduler import backoff
from highmark.store.queue import Claim, SlotStatus, WorkQueue
from highmark.store.store import ControlStore

log = logging.getLogger("highmark.worker")

# How often a worker offers to do the shared upkeep (the tasks' own periods are longer).
MAINTENANCE_INTERVAL = timedelta(seconds=30)
MAX_TICK_FAILURES_ONCE = 5

EXIT_ALREADY_RUNNING = 3
EXIT_ERROR = 4
EXIT_LOST_CLAIM = 5
_PR_SET_PDEATHSIG = 1


@dataclass
class _Child:
    claim: Claim
    process: BaseProcess
    started: float
    deadline: float  # monotonic time after which the child is killed (timeout + grace)
    stop_sent: bool = False


@dataclass
class WorkerResult:
    """What a worker did: the runs it finished, by outcome."""

    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    outcomes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def all_succeeded(self) -> bool:
        return self.failed == 0 and self.cancelled == 0 and self.retried == 0


class Worker:
    """A worker process. Several may run against one PostgreSQL or MySQL/MariaDB control store."""

    def __init__(
        self,
        config: ProjectConfig,
        store: ControlStore,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        once: bool = False,
    ) -> None:
        self.config = config
        self.store = store
        self.queue = WorkQueue(store)
        self.settings = config.worker
        self.concurrency = concurrency or self.settings.concurrency
        self.worker_id = worker_id or f"{this_host()}:{os.getpid()}"
        self.once = once
        self.children: dict[int, _Child] = {}
        self.result = WorkerResult()
        self.stopping = threading.Event()
        self._last_renewal = 0.0
        self._last_maintenance = 0.0
        self._last_orphan_check = 0.0
        self._reconciles: list[BaseProcess] = []  # scheduled reconciles running (reconcile:)

    # ------------------------------------------------------------------ the loop

    def run(self) -> WorkerResult:
        """Work until stopped (or, with ``once``, until what was due is done)."""
        with self._only_worker_on_sqlite(), self._signals():
            # Under the signal handlers: a SIGTERM while movers import is a clean stop.
            for job in self.config.jobs.values():
                job.preload()
            log.info(
                "worker %s started: concurrency %s, control store %s",
                self.worker_id, self.concurrency, self.store.engine.url.render_as_string(),
            )  # fmt: skip
            failures = 0
            while not self.stopping.is_set():
                try:
                    started = self._tick()
                    failures = 0
                except HighmarkError as exc:
                    # The control store is briefly away (restart, deadlock, network): the leases
                    # decide what happens to the claims; keep going rather than drop the children.
                    failures += 1
                    if self.once and failures > MAX_TICK_FAILURES_ONCE:
                        raise
                    log.warning("worker %s: %s; trying again", self.worker_id, exc)
                    started = 0
                if self.once and not started and not self.children and not failures:
                    break
                self.stopping.wait(self.settings.poll_interval.total_seconds())
            self._drain()
        log.info(
            "worker %s stopped: %s succeeded, %s failed, %s cancelled, %s to retry",
            self.worker_id, self.result.succeeded, self.result.failed,
            self.result.cancelled, self.result.retried,
        )  # fmt: skip
        return self.result

    def _tick(self) -> int:
        """One turn of the loop; returns how many runs it started."""
        self._reap()
        self._enforce_timeouts()
        self._renew_leases()
        self._abandon_orphans()
        for slot in self.queue.enqueue_due():
            log.info(
                "worker %s: %s due for %s%s",
                self.worker_id, slot.job_id, _iso(slot.scheduled_for),
                f" (late by {_seconds(slot.late_by)}, stands in for {slot.missed} missed)"
                if slot.missed else "",
            )  # fmt: skip
        started = self._start_ready()
        if not self.once:
            self._maintain()
        return started

    def _maintain(self) -> None:
        """Periodic upkeep shared by all workers (each task runs once between them): freshness
        checks and alert retries, and purges when ``retention.purge_every`` is set."""
        now = time.monotonic()
        if now - self._last_maintenance < MAINTENANCE_INTERVAL.total_seconds():
            return
        self._last_maintenance = now
        from highmark import alerts, reconcile_schedule, retention

        for done in [p for p in self._reconciles if not p.is_alive()]:
            done.join()
            self._reconciles.remove(done)
        try:
            self._reconciles += reconcile_schedule.start_due(
                self.config, self.store, self.worker_id
            )
            checked = alerts.maybe_check(self.store, self.config, worker_id=self.worker_id)
            if checked is not None and (checked.raised or checked.delivered):
                log.info(
                    "worker %s: %s stale alert(s) raised, %s alert(s) delivered on retry",
                    self.worker_id, len(checked.raised), checked.delivered,
                )  # fmt: skip
            if self.config.retention.purge_every is not None:
                report = retention.maybe_purge(self.store, self.config.retention, self.worker_id)
                if report is not None:
                    gone = ", ".join(f"{t.rows} from {name}" for name, t in report.tables.items())
                    log.info("worker %s: purged old history: %s", self.worker_id, gone or "nothing")
        except Exception as exc:  # upkeep never stops the worker from running jobs
            log.warning("worker %s: maintenance failed: %s", self.worker_id, exc)

    def stop(self) -> None:
        self.stopping.set()

    def _start_ready(self) -> int:
        free = self.concurrency - len(self.children)
        claims = self.queue.claim(self.worker_id, free, self.settings.lease)
        for claim in claims:
            self._spawn(claim)
        return len(claims)

    # ------------------------------------------------------------------ children

    def _spawn(self, claim: Claim) -> None:
        job = self.config.jobs.get(claim.job_id)
        if job is None:  # defined in etl_jobs by another project file, not this one
            self.queue.release(self.worker_id, claim)
            log.warning("worker %s: %s is not in this project file", self.worker_id, claim.job_id)
            return
        context = multiprocessing.get_context("fork")
        process = context.Process(
            target=_child_main,
            args=(self.config, claim, self.worker_id),
            name=f"highmark-run-{claim.job_id}",
        )
        db.dispose_all()  # the child must not share pooled connections with this process
        process.start()
        assert process.pid is not None
        now = time.monotonic()
        deadline = now + job.timeout_seconds + self.settings.grace.total_seconds()
        self.children[process.pid] = _Child(claim, process, now, deadline)
        log.info(
            "worker %s: started %s for %s, attempt %s (pid %s)",
            self.worker_id, claim.job_id, _iso(claim.scheduled_for), claim.attempt, process.pid,
        )  # fmt: skip

    def _reap(self) -> None:
        for pid, child in list(self.children.items()):
            if child.process.is_alive():
                continue
            child.process.join()
            del self.children[pid]
            self._record(child, killed_for_timeout=False)

    def _enforce_timeouts(self) -> None:
        """A run past its timeout stops itself at its next batch; one stuck inside a batch is
        killed once the grace period after its timeout has passed too."""
        now = time.monotonic()
        for pid, child in list(self.children.items()):
            if now < child.deadline or not child.process.is_alive():
                continue
            log.warning(
                "worker %s: %s ignored its timeout; killing pid %s",
                self.worker_id, child.claim.job_id, pid,
            )  # fmt: skip
            child.process.kill()
            child.process.join()
            del self.children[pid]
            self._record(child, killed_for_timeout=True)

    def _renew_leases(self) -> None:
        now = time.monotonic()
        if now - self._last_renewal < self.settings.heartbeat.total_seconds():
            return
        self._last_renewal = now
        claims = [c.claim for c in self.children.values()]
        if not claims:
            return
        try:
            lost = self.queue.renew(self.worker_id, claims, self.settings.lease)
        except HighmarkError as exc:  # the control store is away: the lease decides, try again
            log.warning("worker %s: cannot renew leases: %s", self.worker_id, exc)
            return
        for claim in lost:
            log.warning("worker %s: lost the claim on %s", self.worker_id, claim.job_id)

    def _abandon_orphans(self) -> None:
        """Fail the live runs whose owner is gone (a worker killed with its runs, a killed manual
        run): until then their jobs cannot be claimed, and their slots would wait forever."""
        now = time.monotonic()
        if now - self._last_orphan_check < self.settings.heartbeat.total_seconds():
            return
        self._last_orphan_check = now
        try:
            live = self.store.list_runs(status=RunStatus.RUNNING, limit=None)
            if not live:
                return
            clock = self.store.now()
            for run in live:
                reason = abandonment(run, clock, self.settings.lease)
                if reason is not None and self.store.abandon_run(run, reason):
                    log.warning(
                        "worker %s: run %s of %s %s",
                        self.worker_id, run.run_id, run.job_id, reason,
                    )  # fmt: skip
        except HighmarkError as exc:  # the control store is away: try again later
            log.warning("worker %s: cannot look for abandoned runs: %s", self.worker_id, exc)

    def _record(self, child: _Child, *, killed_for_timeout: bool) -> None:
        """Turn a finished child into the slot's outcome (and a retry when one is due)."""
        claim = child.claim
        code = child.process.exitcode
        run = self.queue.run_of(claim)
        if run is not None and run.run_status is RunStatus.RUNNING:
            kind = "timeout" if killed_for_timeout else "abandoned"
            reason = (
                f"timed out after {self.config.jobs[claim.job_id].timeout_seconds}s and was killed"
                if killed_for_timeout
                else f"abandoned: its process (pid {run.pid}) ended with code {code}"
            )
            self.store.abandon_run(run, reason, kind=kind)
            run = self.queue.run_of(claim)
        if run is None:
            if code == EXIT_LOST_CLAIM:  # another worker took the slot over: it is theirs now
                log.warning(
                    "worker %s: lost the claim on %s before its run started",
                    self.worker_id, claim.job_id,
                )  # fmt: skip
                return
            if code == EXIT_ALREADY_RUNNING:  # a manual run holds the job: try again later
                self.queue.release(self.worker_id, claim)
                log.info("worker %s: %s is running elsewhere; later", self.worker_id, claim.job_id)
                return
            status, retryable, run_id, message = RunStatus.FAILED, True, None, f"exit {code}"
        else:
            status, run_id = run.run_status, run.run_id
            retryable = bool((run.error_details or {}).get("retryable"))
            message = run.error_message or ""
        if status is RunStatus.SUCCESS:
            self.queue.finish(self.worker_id, claim, SlotStatus.DONE, run_id=run_id)
            self.result.succeeded += 1
            outcome = "succeeded"
        elif status is RunStatus.CANCELLED:
            self.queue.finish(self.worker_id, claim, SlotStatus.CANCELLED, run_id=run_id)
            self.result.cancelled += 1
            outcome = "was cancelled"
        elif retryable and claim.attempt <= claim.retry_count:
            job = self.config.jobs[claim.job_id]
            delay = backoff(claim.attempt, job.retry_backoff.base, job.retry_backoff.cap)
            self.queue.finish(
                self.worker_id, claim, SlotStatus.RETRY_WAIT, run_id=run_id, retry_after=delay
            )
            self.result.retried += 1
            outcome = f"failed ({message}); retry {claim.attempt} in {_seconds(delay)}"
        else:
            self.queue.finish(self.worker_id, claim, SlotStatus.FAILED, run_id=run_id)
            self.result.failed += 1
            why = "permanent error" if not retryable else f"{claim.attempt} attempt(s)"
            outcome = f"failed ({message}); not retried: {why}"
        self.result.outcomes.append((claim.job_id, status.value))
        log.info(
            "worker %s: %s for %s attempt %s %s (run %s, %.1fs)",
            self.worker_id, claim.job_id, _iso(claim.scheduled_for), claim.attempt, outcome,
            run_id, time.monotonic() - child.started,
        )  # fmt: skip

    # ------------------------------------------------------------------ stopping

    def _drain(self) -> None:
        """Let running jobs finish for the grace period, then ask them to stop, then kill."""
        if not self.children:
            return
        grace = self.settings.grace.total_seconds()
        log.info(
            "worker %s: stopping; waiting up to %ss for %s run(s)",
            self.worker_id, grace, len(self.children),
        )  # fmt: skip
        self._wait_children(grace)
        if self.children:
            for pid, child in self.children.items():
                log.info(
                    "worker %s: asking %s (pid %s) to stop", self.worker_id, child.claim.job_id, pid
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            self._wait_children(max(grace, 10.0))
        for pid, child in list(self.children.items()):
            child.process.kill()
            child.process.join()
            del self.children[pid]
            self._record(child, killed_for_timeout=False)

    def _wait_children(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.children and time.monotonic() < deadline:
            self._reap()
            self._renew_leases()
            time.sleep(0.05)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        def handler(signum: int, _frame: Any) -> None:
            if self.stopping.is_set():
                return
            log.info("worker %s: %s received", self.worker_id, signal.Signals(signum).name)
            self.stopping.set()

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def _only_worker_on_sqlite(self) -> Iterator[None]:
        """SQLite has no row locks to share work with: one worker per SQLite control store."""
        url = self.store.engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            yield
            return
        lock_path = Path(f"{url.database}.worker.lock")
        with lock_path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise ConfigError(
                    f"another worker ({holder}) is using the SQLite control store {url.database}; "
                    "SQLite takes one worker at a time (use PostgreSQL or MySQL for several)"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{self.worker_id}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _child_main(config: ProjectConfig, claim: Claim, worker_id: str) -> None:
    """A scheduled run, in a child process of the worker."""
    _die_with_parent()
    os.setpgid(0, 0)  # a Ctrl-C at the worker's terminal is the worker's to handle
    db.dispose_all()
    token = CancelToken()

    def handler(signum: int, _frame: Any) -> None:
        token.cancel(f"cancelled by {signal.Signals(signum).name} (worker stopping)", signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    notes: tuple[str, ...] = ()
    if claim.missed:
        notes = (f"scheduled for {_iso(claim.scheduled_for)}; stands in for {claim.missed} "
                 "missed fire time(s) (catchup: false)",)  # fmt: skip
    try:
        store = ControlStore.open(config.control_url(), migrate_schema=False)
        record = run_job(
            store,
            config,
            config.jobs[claim.job_id],
            triggered_by=TriggeredBy.SCHEDULER,
            cancel=token,
            slot=ScheduledSlot(claim.scheduled_for, claim.attempt, worker_id, notes),
        )
    except JobAlreadyRunningError as exc:
        log.info("%s", exc)
        sys.exit(EXIT_ALREADY_RUNNING)
    except ClaimLostError as exc:
        log.warning("%s", exc)
        sys.exit(EXIT_LOST_CLAIM)
    except HighmarkError as exc:
        log.error("%s: %s", claim.job_id, exc)
        sys.exit(EXIT_ERROR)
    sys.exit(0 if record.run_status is RunStatus.SUCCESS else 1)


def _die_with_parent() -> None:
    """Ask Linux to kill this child when the worker dies, so a killed worker leaves no run
    behind that nobody supervises (its run is then abandoned and retried)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the run's lease still detects the orphan
        pass


def _iso(value: Any) -> str:
    return str(value.isoformat()).replace("+00:00", "Z")


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():.0f}s"
