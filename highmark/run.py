"""The run: one lifecycle for every kind of job.

Claim the job (one live run per job), lease and heartbeat it, honour cancel and timeout, hand the
work to the job's mover (highmark/movers/), then end the run in ``etl_job_runs`` — ``success``
with the marks the mover returned, committed in the same control-store transaction, or
``failed``/``cancelled`` with the error classified — and raise alerts. This is the only place that
decides when a watermark moves: after the target committed every row it covers. The run never
asks which kind of job it holds.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from highmark import clock
from highmark.config import JobSpec, ProjectConfig
from highmark.errors import (
    HighmarkError,
    JobAlreadyRunningError,
    LeaseLostError,
    RunCancelledError,
    RunTimeoutError,
)
from highmark.lease import LeaseKeeper, abandonment, this_host
from highmark.models import (
    Backfill,
    Counts,
    LoadType,
    MarkUpdate,
    RejectedRow,
    RunRecord,
    RunStatus,
    TriggeredBy,
    Watermark,
    WatermarkRecord,
    later_of,
)
from highmark.movers.base import Mover
from highmark.redact import scrub
from highmark.schema.change import SchemaChange
from highmark.store.store import ControlStore, RunHandle

log = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 3


class RunObserver(Protocol):
    """Hears about a run's progress (the CLI draws a progress bar from it)."""

    def started(self, job: JobSpec, run_id: int, description: str) -> None: ...

    def progressed(self, counts: Counts, batch_number: int, detail: str | None = None) -> None: ...

    def finished(self, run: RunRecord) -> None: ...


class QuietObserver:
    def started(self, job: JobSpec, run_id: int, description: str) -> None:
        log.info("run %s of %s started: %s", run_id, job.job_id, description)

    def progressed(self, counts: Counts, batch_number: int, detail: str | None = None) -> None:
        log.debug("batch %s: %s", batch_number, counts)

    def finished(self, run: RunRecord) -> None:
        log.info("run %s of %s ended %s", run.run_id, run.job_id, run.run_status.value)


@dataclass
class CancelToken:
    """Set from a signal handler, a timer or another thread; the run stops at the next batch
    boundary: ``cancelled`` when asked to, ``failed`` (retryable) when it timed out."""

    event: threading.Event = field(default_factory=threading.Event)
    reason: str = "cancelled"
    signal_number: int | None = None
    timed_out: bool = False

    def cancel(self, reason: str, signal_number: int | None = None) -> None:
        if not self.event.is_set():
            self.reason, self.signal_number = reason, signal_number
            self.event.set()

    def time_out(self, seconds: int) -> None:
        if not self.event.is_set():
            self.timed_out = True
            self.cancel(f"timed out after {seconds}s (timeout_seconds)")

    def check(self) -> None:
        if not self.event.is_set():
            return
        if self.timed_out:
            raise RunTimeoutError(self.reason, reason="timeout")
        raise RunCancelledError(self.reason, signal_number=self.signal_number)


@dataclass(frozen=True)
class ScheduledSlot:
    """What a worker tells a run about itself: the cron slot, the attempt, the worker."""

    scheduled_for: datetime
    attempt: int
    worker_id: str
    notes: tuple[str, ...] = ()


def run_job(
    store: ControlStore,
    config: ProjectConfig,
    job: JobSpec,
    *,
    triggered_by: TriggeredBy = TriggeredBy.MANUAL,
    full_refresh: bool = False,
    observer: RunObserver | None = None,
    cancel: CancelToken | None = None,
    slot: ScheduledSlot | None = None,
    backfill: Backfill | None = None,
    on_claimed: Callable[[int], None] | None = None,
    idempotency_key: str | None = None,
) -> RunRecord:
    """Run ``job`` once and return its finished ``etl_job_runs`` record.

    A failed run is returned (status ``failed``), not raised; a run that cannot start because the
    job is already running raises :class:`JobAlreadyRunningError`. A ``backfill`` loads its window
    again without moving the job's marks (alongside the job's regular runs, never beside another
    backfill of the job). ``on_claimed`` hears the run's id as soon as its row exists (the API
    answers with it); ``idempotency_key`` is the API request's, unique among runs.
    """
    run = JobRun(
        store, config, job, triggered_by, full_refresh, observer, cancel, slot,
        backfill=backfill, on_claimed=on_claimed, idempotency_key=idempotency_key,
    )  # fmt: skip
    record = run.execute()
    if config.alerts and backfill is None:  # a backfill neither starts nor ends a failure streak
        from highmark import alerts

        try:
            alerts.after_run(store, config, record)
        except Exception:  # an alert problem never changes a run's outcome
            log.warning("alerts for run %s could not be raised", record.run_id, exc_info=True)
    return record


class JobRun:
    """One run of one job; the :class:`~highmark.movers.base.RunContext` its mover works in."""

    def __init__(
        self,
        store: ControlStore,
        config: ProjectConfig,
        job: JobSpec,
        triggered_by: TriggeredBy,
        full_refresh: bool,
        observer: RunObserver | None,
        cancel: CancelToken | None,
        slot: ScheduledSlot | None = None,
        *,
        backfill: Backfill | None = None,
        on_claimed: Callable[[int], None] | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.job = job
        self.triggered_by = triggered_by
        self.full_refresh = full_refresh or job.load_type is LoadType.FULL
        self.observer: RunObserver = observer or QuietObserver()
        self.cancel = cancel or CancelToken()
        self.slot = slot
        self.counts = Counts()
        self.batch_number = 0
        self.phase = "starting"
        self.record_hint: dict[str, Any] = {}
        self.notes: list[str] = list(slot.notes) if slot is not None else []
        self.lease: LeaseKeeper | None = None
        self.previous_checkpoint: dict[str, Any] | None = None
        self.kept_checkpoint: dict[str, Any] | None = None
        self.marks: dict[str, WatermarkRecord] = {}
        self.mark_specs = {spec.source_table: spec for spec in job.marks()}
        self.mover: Mover | None = None
        self.backfill = backfill
        self.on_claimed = on_claimed
        self.idempotency_key = idempotency_key
        if backfill is not None:
            window = backfill.to_json()
            self.notes.append(
                f"backfill of ({window['from']}, {window['to']}]: the watermark is not moved"
            )

    @property
    def run_id(self) -> int:
        return self.handle.run_id

    # ------------------------------------------------------------------ outline

    def execute(self) -> RunRecord:
        self.marks = self._committed_marks()
        start: Watermark | None = None
        for mark in self.marks.values():
            start = later_of(start, mark.watermark())
        if self.backfill is not None:
            start = self.backfill.low
        handle = self._claim(start)
        self.handle = handle
        if self.on_claimed is not None:
            try:
                self.on_claimed(handle.run_id)
            except Exception:  # whoever waited for the id is gone; the run goes on
                log.warning("run %s: could not report its id", handle.run_id, exc_info=True)
        timer = threading.Timer(
            self.job.timeout_seconds, self.cancel.time_out, args=(self.job.timeout_seconds,)
        )
        timer.daemon = True
        timer.start()
        log.debug(
            "job %s: run %s claimed by %s pid %s (committed watermark %s)",
            self.job.job_id, handle.run_id, this_host(), os.getpid(), start,
        )  # fmt: skip
        try:
            with LeaseKeeper(
                self.store, handle, self.config.worker.heartbeat, self.cancel.cancel
            ) as lease:
                self.lease = lease
                updates = self._work()
            self.phase = "finishing"
            if self.counts.rows_rejected:
                self.notes.append(
                    f"{self.counts.rows_rejected} bad row(s) quarantined in etl_rejected_rows "
                    f"(highmark rejected {self.job.job_id})"
                )
            backfill = self.backfill
            record = self.store.finish_success(
                handle,
                self.counts,
                marks=updates if backfill is None else [],  # a backfill commits no mark
                mark_tables=list(self.mark_specs) if backfill is None else [],
                notes=self.notes,
                watermark_end=backfill.high if backfill is not None else None,
                checkpoint=self.kept_checkpoint,
            )
        except LeaseLostError:
            raise
        except RunCancelledError as exc:
            record = self._finish(handle, RunStatus.CANCELLED, exc)
        except Exception as exc:  # every failure is recorded on the run, then reported
            record = self._finish(handle, RunStatus.FAILED, exc)
        finally:
            timer.cancel()
            if self.mover is not None:
                self.mover.close()
        self.observer.finished(record)
        return record

    def _work(self) -> list[MarkUpdate]:
        self.phase = "connecting"
        data = self.store.get_checkpoint(self.job.job_id, backfill=self.backfill is not None)
        self.previous_checkpoint = data or None
        self.mover = self.job.mover(self.config)
        return self.mover.move(self)

    def _committed_marks(self) -> dict[str, WatermarkRecord]:
        """The job's marks that still match its definition; a mark on another column or of
        another type is ignored (the job starts over there)."""
        wanted = self.mark_specs
        marks: dict[str, WatermarkRecord] = {}
        for record in self.store.get_watermarks(self.job.job_id):
            spec = wanted.get(record.source_table)
            if spec is None:
                continue
            if record.watermark_type != spec.type.value or record.watermark_column != spec.column:
                log.warning(
                    "job %s: the stored watermark of %s is on %s (%s), the job's on %s (%s): "
                    "starting over",
                    self.job.job_id, record.source_table, record.watermark_column,
                    record.watermark_type, spec.column, spec.type.value,
                )  # fmt: skip
                continue
            marks[record.source_table] = record
        return marks

    def _claim(self, committed: Watermark | None) -> RunHandle:
        for _ in range(CLAIM_ATTEMPTS):
            handle = self.store.start_run(
                self.job.job_id,
                triggered_by=self.triggered_by.value,
                host=this_host(),
                pid=os.getpid(),
                watermark_start=committed,
                scheduled_for=self.slot.scheduled_for if self.slot else None,
                attempt=self.slot.attempt if self.slot else None,
                worker_id=self.slot.worker_id if self.slot else None,
                backfill_window=self.backfill.to_json() if self.backfill else None,
                idempotency_key=self.idempotency_key,
            )
            if handle is not None:
                return handle
            live = self.store.live_run(self.job.job_id, backfill=self.backfill is not None)
            if live is None:
                continue  # it finished meanwhile
            reason = abandonment(live, self.store.now(), self.config.worker.lease)
            if reason is None:
                what = "a backfill of job" if self.backfill is not None else "job"
                raise JobAlreadyRunningError(
                    f"{what} {self.job.job_id} is already running: run {live.run_id} on "
                    f"{live.host} (pid {live.pid}), started {_iso(live.started_at)}",
                    run_id=live.run_id,
                )
            if self.store.abandon_run(live, reason):
                log.warning("run %s of %s %s", live.run_id, self.job.job_id, reason)
        raise JobAlreadyRunningError(f"job {self.job.job_id}: could not claim it; try again")

    # ------------------------------------------------------------------ RunContext

    def started(self, description: str) -> None:
        self.observer.started(self.job, self.handle.run_id, description)

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    def set_record_hint(self, hint: dict[str, Any]) -> None:
        self.record_hint = hint

    def set_upper_bound(self, bound: str | None, reason: str | None) -> None:
        self.store.set_upper_bound(self.handle, bound, reason)

    def add(self, counts: Counts, *, detail: str | None = None) -> None:
        self.counts = self.counts + counts
        self.batch_number += 1
        if self.lease is not None:
            self.lease.counts = self.counts
        self.observer.progressed(self.counts, self.batch_number, detail)

    def replace_counts(self, counts: Counts) -> None:
        # (Quarantined rows are counted as they are quarantined: a mover's totals keep them.)
        self.counts = replace(counts, rows_rejected=self.counts.rows_rejected)
        if self.lease is not None:
            self.lease.counts = self.counts

    def save_checkpoint(self, data: dict[str, Any]) -> None:
        self.phase = "checkpointing"
        if self.store.save_checkpoint(self.handle, data, self.counts):
            self.cancel.cancel("cancelled by request (highmark cancel)")
        self.phase = "reading"

    def keep_checkpoint(self, data: dict[str, Any] | None) -> None:
        self.kept_checkpoint = data

    def check(self) -> None:
        self.cancel.check()
        if self.lease is not None:
            self.lease.check()

    def reject(self, rows: list[RejectedRow]) -> None:
        self.store.add_rejected_rows(self.handle, rows)
        self.counts = self.counts + Counts(rows_rejected=len(rows))
        if self.lease is not None:
            self.lease.counts = self.counts

    def sleep(self, seconds: float) -> None:
        clock.sleep(seconds, self.cancel.event)
        self.check()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def schema_changed(self, change: SchemaChange) -> None:
        from highmark.store.schema_changes import SchemaHistory

        if SchemaHistory(self.store).record(self.job.job_id, self.handle.run_id, change):
            self.notes.append(change.describe())

    # ------------------------------------------------------------------ endings

    def _finish(self, handle: RunHandle, status: RunStatus, exc: BaseException) -> RunRecord:
        message = str(exc) if isinstance(exc, HighmarkError) else f"{type(exc).__name__}: {exc}"
        # The run's row names its job: "job X: …" would name it twice in "X: …" lines.
        message = message.removeprefix(f"job {self.job.job_id}: ")
        retryable = exc.retryable if isinstance(exc, HighmarkError) else False
        details: dict[str, Any] = {
            "exception_type": type(exc).__name__,
            "message": scrub(message),
            "retryable": retryable,
            "error_class": "retryable" if retryable else "permanent",
            "phase": self.phase,
            "batch_number": self.batch_number + 1,
            "stack": scrub("".join(traceback.format_exception(exc))),
        }
        if isinstance(exc, HighmarkError):
            details.update(exc.details)
        if isinstance(exc, RunTimeoutError):
            details["reason"] = "timeout"
        if isinstance(exc, RunCancelledError):
            details["reason"] = "cancelled"
            if exc.signal_number is not None:
                details["signal"] = exc.signal_number
        details.update(self.record_hint)
        log.debug("run %s failed", handle.run_id, exc_info=exc)
        return self.store.finish_failed(
            handle,
            status=status,
            error_message=message,
            error_details=details,
            counts=self.counts,
            notes=self.notes,
        )


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
