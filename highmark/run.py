"""The run: claim the job, plan the window, move batches, checkpoint, commit the mark, finish.

This is the only place that decides when the watermark moves: after the target committed every row
it covers, in the same control-store transaction that ends the run ``success``.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from highmark import clock, failpoints, parallel
from highmark.checkpoint import RunCheckpoint, encode_value, watermark_fields
from highmark.config import JobSpec, ProjectConfig, ResolvedConnection, redact_url
from highmark.destinations.sql import SqlDestination
from highmark.errors import (
    HighmarkError,
    JobAlreadyRunningError,
    LeaseLostError,
    RunCancelledError,
    RunTimeoutError,
    SourceError,
)
from highmark.lease import LeaseKeeper, abandonment, this_host
from highmark.models import (
    Counts,
    LoadType,
    RunRecord,
    RunStatus,
    TriggeredBy,
    Watermark,
    WatermarkType,
    later_of,
)
from highmark.redact import scrub
from highmark.sources import postgres_copy
from highmark.sources.base import Batch
from highmark.sources.sql import SqlSource
from highmark.store.store import ControlStore, RunHandle

log = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 3


class RunObserver(Protocol):
    """Hears about a run's progress (the CLI draws a progress bar from it)."""

    def started(self, job: JobSpec, run_id: int, description: str) -> None: ...

    def progressed(self, counts: Counts, batch_number: int) -> None: ...

    def finished(self, run: RunRecord) -> None: ...


class QuietObserver:
    def started(self, job: JobSpec, run_id: int, description: str) -> None:
        log.info("run %s of %s started: %s", run_id, job.job_id, description)

    def progressed(self, counts: Counts, batch_number: int) -> None:
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


@dataclass
class _Progress:
    """What a run has done so far (mutable, owned by one run)."""

    counts: Counts = field(default_factory=Counts)
    batch_number: int = 0
    position: Watermark | None = None
    max_key: Watermark | None = None
    record_hint: dict[str, Any] = field(default_factory=dict)


def resolve(config: ProjectConfig, name: str) -> ResolvedConnection:
    spec = config.connections[name]
    return ResolvedConnection(name=name, url=config.connection_url(name), timezone=spec.timezone)


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
) -> RunRecord:
    """Run ``job`` once and return its finished ``etl_job_runs`` record.

    A failed run is returned (status ``failed``), not raised; a run that cannot start because the
    job is already running raises :class:`JobAlreadyRunningError`.
    """
    run = _JobRun(store, config, job, triggered_by, full_refresh, observer, cancel)
    run.slot = slot
    record = run.execute()
    if config.alerts:
        from highmark import alerts

        try:
            alerts.after_run(store, config, record)
        except Exception:  # an alert problem never changes a run's outcome
            log.warning("alerts for run %s could not be raised", record.run_id, exc_info=True)
    return record


@dataclass(frozen=True)
class ScheduledSlot:
    """What a worker tells a run about itself: the cron slot, the attempt, the worker."""

    scheduled_for: datetime
    attempt: int
    worker_id: str
    notes: tuple[str, ...] = ()


class _JobRun:
    def __init__(
        self,
        store: ControlStore,
        config: ProjectConfig,
        job: JobSpec,
        triggered_by: TriggeredBy,
        full_refresh: bool,
        observer: RunObserver | None,
        cancel: CancelToken | None,
    ) -> None:
        self.store = store
        self.config = config
        self.job = job
        self.triggered_by = triggered_by
        self.full_refresh = full_refresh or job.load_type is LoadType.FULL
        self.observer: RunObserver = observer or QuietObserver()
        self.cancel = cancel or CancelToken()
        self.progress = _Progress()
        self.phase = "starting"
        self.checkpoint: RunCheckpoint | None = None
        self.lease: LeaseKeeper | None = None
        self.notes: list[str] = []
        self.slot: ScheduledSlot | None = None

    # ------------------------------------------------------------------ outline

    def execute(self) -> RunRecord:
        committed = self._committed_watermark()
        handle = self._claim(committed)
        self.handle = handle
        if self.slot is not None:
            self.notes.extend(self.slot.notes)
        timer = threading.Timer(
            self.job.timeout_seconds, self.cancel.time_out, args=(self.job.timeout_seconds,)
        )
        timer.daemon = True
        timer.start()
        log.debug(
            "job %s: run %s claimed by %s pid %s (committed watermark %s)",
            self.job.job_id, handle.run_id, this_host(), os.getpid(), committed,
        )  # fmt: skip
        try:
            with LeaseKeeper(
                self.store, handle, self.config.worker.heartbeat, self.cancel.cancel
            ) as lease:
                self.lease = lease
                self._work(committed)
            self.phase = "finishing"
            record = self.store.finish_success(
                handle,
                self.progress.counts,
                source_table=self.job.source.table,
                watermark_column=self.job.watermark.column if self.job.watermark else None,
                watermark_end=self.progress.position if self.job.watermark else None,
                notes=self.notes,
            )
        except LeaseLostError:
            raise
        except RunCancelledError as exc:
            record = self._finish(handle, RunStatus.CANCELLED, exc)
        except Exception as exc:  # every failure is recorded on the run, then reported
            record = self._finish(handle, RunStatus.FAILED, exc)
        finally:
            timer.cancel()
            self._close()
        self.observer.finished(record)
        return record

    def _committed_watermark(self) -> Watermark | None:
        spec = self.job.watermark
        record = self.store.get_watermark(self.job.job_id)
        if spec is None or record is None:
            return None
        if record.watermark_type != spec.type.value or record.watermark_column != spec.column:
            log.warning(
                "job %s: the stored watermark is on %s (%s), the job's on %s (%s): starting over",
                self.job.job_id, record.watermark_column, record.watermark_type,
                spec.column, spec.type.value,
            )  # fmt: skip
            return None
        return record.watermark()

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
            )
            if handle is not None:
                return handle
            live = self.store.live_run(self.job.job_id)
            if live is None:
                continue  # it finished meanwhile
            reason = abandonment(live, self.store.now(), self.config.worker.lease)
            if reason is None:
                raise JobAlreadyRunningError(
                    f"job {self.job.job_id} is already running: run {live.run_id} on "
                    f"{live.host} (pid {live.pid}), started {_iso(live.started_at)}"
                )
            if self.store.abandon_run(live, reason):
                log.warning("run %s of %s %s", live.run_id, self.job.job_id, reason)
        raise JobAlreadyRunningError(f"job {self.job.job_id}: could not claim it; try again")

    def _work(self, committed: Watermark | None) -> None:
        self.phase = "connecting"
        self.source = SqlSource(
            self._resolve(self.job.source.connection), self.job.source, self.job
        )
        self.destination = SqlDestination(
            self._resolve(self.job.target.connection), self.job.target, self.job
        )
        self.phase = "describing source"
        self.source.describe()
        previous = self._previous_checkpoint()
        if previous is not None and previous.mode == "full":
            self._prepare_target()
            self._full(previous)
        elif self.full_refresh:
            self._prepare_target()
            self._full(None)
        else:
            self._incremental(committed, previous)

    def _prepare_target(self) -> None:
        """Create or check the target (a conflicting target fails here, before any write)."""
        self.phase = "preparing target"
        schema = self.source.describe()
        source_zone = self.config.connections[self.job.source.connection].timezone
        self.destination.prepare(schema, source_zone)
        self.bulk = self.destination.takes_copy_from(schema.dialect)

    def _resolve(self, name: str) -> ResolvedConnection:
        return resolve(self.config, name)

    def _previous_checkpoint(self) -> RunCheckpoint | None:
        data = self.store.get_checkpoint(self.job.job_id)
        if not data:
            return None
        checkpoint = RunCheckpoint.parse(self.job.job_id, data)
        if checkpoint.run_id == self.handle.run_id:
            return None
        spec_type = self.job.watermark.type if self.job.watermark else None
        if checkpoint.mode == "incremental" and (
            self.full_refresh or checkpoint.watermark_type is not spec_type
        ):
            log.warning(
                "job %s: discarding the checkpoint of run %s", self.job.job_id, checkpoint.run_id
            )
            return None
        log.info(
            "job %s: resuming run %s's checkpoint at batch %s",
            self.job.job_id, checkpoint.run_id, checkpoint.batch_number,
        )  # fmt: skip
        return checkpoint

    # ------------------------------------------------------------------ incremental

    def _incremental(self, committed: Watermark | None, previous: RunCheckpoint | None) -> None:
        spec = self.job.watermark
        assert spec is not None
        recovering = previous is not None
        inclusive = False
        if previous is not None:
            low = previous.position() or committed
            inclusive = previous.inclusive
            high = previous.window_high
            reason = previous.window_high_reason or "pinned by the resumed checkpoint"
        else:
            self.phase = "computing the upper bound"
            bound = self.source.upper_bound(committed)
            high, reason = bound.high, bound.reason
            if bound.blind:
                if not spec.lag and spec.blind_bound == "refuse":
                    raise SourceError(
                        f"job {self.job.job_id}: the source role cannot see other sessions' "
                        "transactions, so the upper bound is blind to late commits; grant it "
                        "pg_read_all_stats (PostgreSQL) or PROCESS (MySQL/MariaDB), or set "
                        "watermark.lag (or watermark.blind_bound: allow)",
                        retryable=False,
                    )
                self.notes.append(f"upper bound is blind to open transactions ({reason})")
            if bound.hold:
                high = _low_value(committed)
                self.notes.append(f"watermark held back: {reason}")
            self._check_anomalies(bound.now if spec.type is WatermarkType.TIMESTAMP else None)
            low = committed
            if low is not None and spec.lag and low.ts is not None:
                low = Watermark(WatermarkType.TIMESTAMP, ts=low.ts - spec.lag)
                inclusive = True
        # The read position (what a resume continues after) is not the watermark: with `lag` the
        # run reads below the committed mark, and a resume must re-read from where it stopped.
        # The mark is moved at the end to the last key read; the store keeps it from going back.
        self.progress.position = low
        self.checkpoint_base = {
            "mode": "incremental",
            "watermark_type": spec.type,
            "window_high": high,
            "window_high_reason": reason,
            "recovery_mode": recovering,
        }
        self.store.set_upper_bound(self.handle, _bound_text(high), reason)
        self.observer.started(
            self.job, self.handle.run_id, self._describe(low, high, reason, recovering)
        )
        if _window_is_empty(low, high) or (
            previous is None and not self.source.has_rows(low, high, inclusive=inclusive)
        ):
            return  # nothing to load: the target is not even opened (start-up time)
        self._prepare_target()
        # A first load into an empty target writes straight into it (no stage, no merge); a
        # resumed one first removes what its interrupted run wrote after the last checkpoint.
        direct = previous.direct if previous is not None else (
            committed is None and self.destination.is_empty()
        )  # fmt: skip
        self.checkpoint_base["direct"] = direct
        writers = self._parallel_writers(direct, previous)
        self.checkpoint_base["parallel"] = writers > 0
        if previous is None and direct:
            # A first load killed before its first batch's checkpoint (in parallel, ranges may
            # commit before the first is checkpointed) resumes as a first load (clear what it
            # wrote, load again), not as a merge into a half-filled target.
            self._save_checkpoint(inclusive=inclusive)
        if writers:
            self._load_in_parallel(low, high, inclusive, previous, writers)
            return
        if previous is not None and direct:
            removed = self.destination.delete_after(low, inclusive=inclusive)
            log.info(
                "job %s: removed %s row(s) written after the checkpoint", self.job.job_id, removed
            )
        self.phase = "reading"
        # _closing(): a run stopped mid-read closes the source's cursor now, while its
        # connection is open, not whenever the garbage collector gets to the generator.
        with _closing(self._window_batches(low, high, inclusive, direct)) as batches:
            self._load_window(batches, direct, inclusive)

    def _load_window(self, batches: Iterator[Batch], direct: bool, inclusive: bool) -> None:
        spec = self.job.watermark
        assert spec is not None
        for batch in batches:
            self._write(batch, direct)
            if batch.last_key is not None:
                self.progress.position = batch.last_key
                # Without a tiebreaker a row batch may end in the middle of a tie: a resume reads
                # that timestamp again (harmless). A COPY range always takes whole ties.
                inclusive = (
                    spec.type is WatermarkType.TIMESTAMP
                    and not spec.tiebreaker
                    and batch.copy is None
                )
            self._save_checkpoint(
                **watermark_fields("last_value", self.progress.position), inclusive=inclusive
            )

    def _parallel_writers(self, direct: bool, previous: RunCheckpoint | None) -> int:
        """How many ranges load at once, or 0 for a serial load (highmark/parallel.py)."""
        wanted = self.job.parallelism
        resuming_parallel = previous is not None and previous.parallel
        if not resuming_parallel and (wanted == 1 or not direct or previous is not None):
            return 0
        reason = parallel.unsupported(self.job, self.bulk)
        if reason is not None:
            # A parallel checkpoint resumes serially just as well: everything past its
            # prefix is cleared and loaded again.
            if wanted > 1:
                self.notes.append(f"parallelism {wanted} not used: {reason}")
            return 0
        return wanted

    def _load_in_parallel(
        self,
        low: Watermark | None,
        high: Any,
        inclusive: bool,
        previous: RunCheckpoint | None,
        writers: int,
    ) -> None:
        done = previous.done() if previous is not None else []
        if previous is not None:
            removed = sum(
                self.destination.delete_range(after, upto, inclusive=inclusive and i == 0)
                for i, (after, upto) in enumerate(parallel.gaps(low, done))
            )
            log.info(
                "job %s: removed %s row(s) written after the checkpoint; %s range(s) were done",
                self.job.job_id, removed, len(done),
            )  # fmt: skip
        soft = self.job.soft_delete
        ledger = parallel.RangeLedger(low)

        def committed(counts: Counts) -> None:
            self._count(counts)
            self.progress.position = ledger.position
            self._save_checkpoint(
                **watermark_fields("last_value", ledger.position),
                inclusive=inclusive and ledger.position == low,
                done_ranges=ledger.done_ranges(),
            )

        extra = [self.destination.clone() for _ in range(writers - 1)]
        self.phase = "reading"
        try:
            parallel.load_ranges(
                parallel.plan_ranges(
                    self.source, low, high, inclusive=inclusive,
                    batch_size=self.job.batch_size,
                    skip_deleted=soft is not None and soft.mode == "delete",
                    done=done,
                ),
                ledger,
                [self.destination, *extra],
                before_each=self._check_alive,
                committed=committed,
            )  # fmt: skip
        finally:
            for writer in extra:
                writer.close()
        self.progress.position = ledger.position

    def _check_alive(self) -> None:
        self.cancel.check()
        assert self.lease is not None
        self.lease.check()

    def _window_batches(
        self, low: Watermark | None, high: Any, inclusive: bool, direct: bool
    ) -> Iterator[Batch]:
        size = self.job.batch_size
        soft = self.job.soft_delete
        skip_deleted = direct and soft is not None and soft.mode == "delete"
        if self.bulk:
            return postgres_copy.window_ranges(
                self.source, low, high, inclusive=inclusive, batch_size=size,
                skip_deleted=skip_deleted,
            )  # fmt: skip
        batches = self.source.read_window(low, high, inclusive=inclusive, batch_size=size)
        if not skip_deleted:
            return batches
        assert soft is not None
        column = self.source.describe().find(soft.column)
        assert column is not None
        return (
            Batch(rows=[r for r in b.rows if r[column.name] is None], last_key=b.last_key)
            for b in batches
        )

    def _check_anomalies(self, now: datetime | None) -> None:
        """NULL watermarks are an error unless the job says otherwise; future rows are reported."""
        spec = self.job.watermark
        assert spec is not None
        found = self.source.anomalies(now)
        table, column = self.job.source.table, spec.column
        if found.null_rows:
            if spec.on_null == "error":
                raise SourceError(
                    f"job {self.job.job_id}: {found.null_rows} row(s) of {table} have a NULL "
                    f"{column}, which no window can read; fix them, or set watermark.on_null: "
                    "skip or include",
                    retryable=False,
                )
            verb = "skipped" if spec.on_null == "skip" else "included in every run"
            self.notes.append(f"{found.null_rows} row(s) with a NULL {column} {verb}")
        if found.future_rows:
            latest = _bound_text(found.future_max)
            note = (
                f"{found.future_rows} row(s) have {column} after the source clock "
                f"(up to {latest}); they stay out of every window until then"
            )
            log.warning("job %s: %s", self.job.job_id, note)
            self.notes.append(note)

    def _write(self, batch: Batch, direct: bool) -> None:
        self.cancel.check()
        assert self.lease is not None
        self.lease.check()
        self.phase = "writing"
        self.progress.record_hint = self._record_range(batch)
        if direct:
            counts = self.destination.write_direct(batch)
        else:
            counts = self.destination.merge_batch(batch)
        failpoints.reach("after_target_commit")
        self._count(counts)

    def _count(self, counts: Counts) -> None:
        self.progress.counts = self.progress.counts + counts
        self.progress.batch_number += 1
        if self.lease is not None:
            self.lease.counts = self.progress.counts
        self.observer.progressed(self.progress.counts, self.progress.batch_number)

    def _save_checkpoint(self, **fields: Any) -> None:
        self.phase = "checkpointing"
        data = {
            **self.checkpoint_base,
            **fields,
            "run_id": self.handle.run_id,
            "batch_number": self.progress.batch_number,
            "total_rows_processed": self.progress.counts.rows_read,
            "last_checkpoint_at": clock.now(),
        }
        checkpoint = RunCheckpoint.model_validate(data)
        if self.store.save_checkpoint(self.handle, checkpoint.to_json(), self.progress.counts):
            self.cancel.cancel("cancelled by request (highmark cancel)")
        self.phase = "reading"

    # ------------------------------------------------------------------ full

    def _full(self, previous: RunCheckpoint | None) -> None:
        spec = self.job.watermark
        recovering = previous is not None
        after_pk = previous.primary_key() if previous is not None else None
        if previous is not None:
            high, reason = previous.window_high, previous.window_high_reason or "pinned"
            self.progress.max_key = previous.max_key()
        elif spec is not None:
            self.phase = "computing the upper bound"
            bound = self.source.upper_bound(None)
            high, reason = (None, bound.reason) if bound.hold else (bound.high, bound.reason)
        else:
            high, reason = None, "full load"
        self.checkpoint_base = {
            "mode": "full",
            "watermark_type": spec.type if spec else None,
            "window_high": high,
            "window_high_reason": reason,
            "recovery_mode": recovering,
        }
        self.store.set_upper_bound(self.handle, _bound_text(high), reason)
        self.observer.started(
            self.job,
            self.handle.run_id,
            ("resuming full load" if recovering else "full load")
            + f" of {self.job.source.table} into {self.job.target.table}",
        )
        self.phase = "staging"
        if not self.destination.stage_begin(after_pk) and after_pk is not None:
            log.warning(
                "job %s: the staging table is gone; the full load starts over", self.job.job_id
            )
            after_pk, self.progress.max_key = None, None
        if self.bulk:
            batches = postgres_copy.key_ranges(
                self.source, after_pk, high, batch_size=self.job.batch_size
            )
        else:
            batches = self.source.read_all(after_pk, high, batch_size=self.job.batch_size)
        with _closing(batches):
            self._stage_all(batches)
        self.cancel.check()
        self.phase = "replacing the target"
        merged = self.destination.stage_finish()
        self.progress.counts = Counts(
            rows_read=self.progress.counts.rows_read,
            rows_written=merged.rows_written,
            rows_updated=merged.rows_updated,
            rows_deleted=merged.rows_deleted,
        )
        self.progress.position = self.progress.max_key

    def _stage_all(self, batches: Iterator[Batch]) -> None:
        for batch in batches:
            self.cancel.check()
            assert self.lease is not None
            self.lease.check()
            self.progress.record_hint = self._record_range(batch)
            staged = self.destination.stage_batch(batch)
            failpoints.reach("after_target_commit")
            self._count(Counts(rows_read=staged))
            self.progress.max_key = later_of(self.progress.max_key, batch.max_key_within)
            self._save_checkpoint(
                last_pk=[encode_value(v) for v in batch.last_pk or ()],
                **watermark_fields("max_key", self.progress.max_key),
            )

    # ------------------------------------------------------------------ endings

    def _finish(self, handle: RunHandle, status: RunStatus, exc: BaseException) -> RunRecord:
        message = str(exc) if isinstance(exc, HighmarkError) else f"{type(exc).__name__}: {exc}"
        retryable = exc.retryable if isinstance(exc, HighmarkError) else False
        details: dict[str, Any] = {
            "exception_type": type(exc).__name__,
            "message": scrub(message),
            "retryable": retryable,
            "error_class": "retryable" if retryable else "permanent",
            "phase": self.phase,
            "batch_number": self.progress.batch_number + 1,
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
        details.update(self.progress.record_hint)
        log.debug("run %s failed", handle.run_id, exc_info=exc)
        return self.store.finish_failed(
            handle,
            status=status,
            error_message=message,
            error_details=details,
            counts=self.progress.counts,
            notes=self.notes,
        )

    def _close(self) -> None:
        for part in ("source", "destination"):
            obj = getattr(self, part, None)
            if obj is not None:
                obj.close()

    # ------------------------------------------------------------------ helpers

    def _record_range(self, batch: Batch) -> dict[str, Any]:
        if not batch.rows:
            return {}
        keys = self.job.primary_key
        first, last = batch.rows[0], batch.rows[-1]

        def pk(row: dict[str, Any]) -> Any:
            values = [encode_value(_lookup(row, k)) for k in keys]
            return values[0] if len(values) == 1 else values

        return {"batch_first_record_id": pk(first), "batch_last_record_id": pk(last)}

    def _describe(self, low: Watermark | None, high: Any, reason: str, recovering: bool) -> str:
        start = "the beginning" if low is None else str(low)
        prefix = "resuming " if recovering else ""
        source = redact_url(self._resolve(self.job.source.connection).url)
        return (
            f"{prefix}{self.job.source.table} ({source}) after {start} "
            f"up to {_bound_text(high)} ({reason})"
        )


@contextmanager
def _closing(batches: Iterator[Batch]) -> Iterator[Iterator[Batch]]:
    """Close a batch generator on the way out, even when the run stops mid-read."""
    try:
        yield batches
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _lookup(row: dict[str, Any], name: str) -> Any:
    if name in row:
        return row[name]
    lowered = name.lower()
    return next((v for k, v in row.items() if k.lower() == lowered), None)


def _window_is_empty(low: Watermark | None, high: datetime | int | None) -> bool:
    """No key can lie in (low, high]: no bound at all, or a bound below the mark (a source
    clock that stepped back; the mark then stays where it is)."""
    if high is None:
        return True
    floor = _low_value(low)
    if floor is None:
        return False
    return bool(high < floor)  # type: ignore[operator]


def _low_value(mark: Watermark | None) -> datetime | int | None:
    if mark is None:
        return None
    return mark.id if mark.type is WatermarkType.INTEGER else mark.ts


def _bound_text(high: Any) -> str | None:
    if high is None:
        return None
    if isinstance(high, datetime):
        return _iso(high)
    return str(high)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
