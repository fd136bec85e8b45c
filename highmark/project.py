"""The Python API: a project file, its control store, and the operations on its jobs.

    project = highmark.Project.load("highmark.yml")
    run = project.run("orders_sync")
    print(run.run_status, run.rows_written)

The CLI calls exactly these methods.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from highmark.config import (
    JobSpec,
    TableJobSpec,
    load_project_config,
)
from highmark.errors import ConfigError
from highmark.models import (
    Backfill,
    JobRecord,
    LoadType,
    RunRecord,
    RunStatus,
    TriggeredBy,
    WatermarkType,
)
from highmark.project_state import ProjectState, parse_watermark
from highmark.run import CancelToken, RunObserver, run_job
from highmark.store.store import ControlStore, JobDefinition

if TYPE_CHECKING:
    from highmark.worker import Worker


class Project(ProjectState):
    """A loaded project: validated configuration plus its (migrated, synced) control store."""

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, sync: bool = True, migrate: bool = True
    ) -> Project:
        """Read and validate the project file, open its control store (bringing its schema up to
        date unless ``migrate=False``), sync its jobs."""
        config = load_project_config(path)
        store = ControlStore.open(config.control_url(), migrate_schema=migrate)
        project = cls(config, store)
        if sync:
            project.sync()
        return project

    def sync(self) -> None:
        """Upsert every job of the file into ``etl_jobs``; jobs gone from it become inactive."""
        gone = self.store.sync_jobs([_definition(job) for job in self.config.jobs.values()])
        if gone:
            from highmark.cdc_ops import warn_removed

            warn_removed(self.config, self.store, gone)

    def migrate(self) -> tuple[str | None, str]:
        return self.store.migrate()

    # ------------------------------------------------------------------ jobs

    def jobs(self) -> list[JobRecord]:
        return self.store.list_jobs()

    def run(
        self,
        job_id: str,
        *,
        full_refresh: bool = False,
        triggered_by: TriggeredBy | str = TriggeredBy.MANUAL,
        observer: RunObserver | None = None,
        cancel: CancelToken | None = None,
        on_claimed: Callable[[int], None] | None = None,
        idempotency_key: str | None = None,
    ) -> RunRecord:
        """Run a job once; returns the finished run record (``success``, ``failed``…).

        ``on_claimed`` hears the run's id as soon as its row exists; ``idempotency_key`` (an API
        request's) is unique among runs: a second run with it raises DuplicateRequestError."""
        return run_job(
            self.store,
            self.config,
            self.job(job_id),
            triggered_by=TriggeredBy(triggered_by),
            full_refresh=full_refresh,
            observer=observer,
            cancel=cancel,
            on_claimed=on_claimed,
            idempotency_key=idempotency_key,
        )

    def backfill(
        self,
        job_id: str,
        start: str | None = None,
        end: str | None = None,
        *,
        resume: bool = False,
        triggered_by: TriggeredBy | str = TriggeredBy.MANUAL,
        observer: RunObserver | None = None,
        cancel: CancelToken | None = None,
        on_claimed: Callable[[int], None] | None = None,
        idempotency_key: str | None = None,
    ) -> RunRecord:
        """Load the window ``(start, end]`` of an incremental SQL job again, in a run of its own
        that moves no watermark (``resume``: the job's unfinished backfill, whatever its window).

        It may run while the job's regular runs do, never beside another backfill of the job;
        a killed one resumes from its own checkpoint when started again on the same window."""
        window = self.backfill_window(job_id, start, end, resume=resume)
        return run_job(
            self.store,
            self.config,
            self.job(job_id),
            triggered_by=TriggeredBy(triggered_by),
            observer=observer,
            cancel=cancel,
            backfill=window,
            on_claimed=on_claimed,
            idempotency_key=idempotency_key,
        )

    def backfill_window(
        self, job_id: str, start: str | None, end: str | None, *, resume: bool = False
    ) -> Backfill:
        """Check that ``job_id`` can be backfilled and parse its window (ConfigError if not)."""
        if not self.can_backfill(job_id):
            raise ConfigError(
                f"job {job_id} is not an incremental SQL job: it cannot be backfilled"
            )
        job = self.job(job_id)
        assert isinstance(job, TableJobSpec) and job.watermark is not None
        if not self.store.get_watermarks(job_id):
            # Its first run loads everything (straight into the empty target, not by upserts,
            # which a backfill beside it would break): there is nothing to load again yet.
            raise ConfigError(
                f"job {job_id} has no watermark yet: its first run loads everything; "
                "backfill once it has succeeded"
            )
        if resume:
            window = (self.store.get_checkpoint(job_id, backfill=True) or {}).get("backfill_window")
            if not isinstance(window, dict):
                raise ConfigError(f"job {job_id} has no unfinished backfill to resume")
            start, end = window.get("from"), window.get("to")
        if not start or not end:
            raise ConfigError("a backfill needs its window: --from X --to Y")
        kind = job.watermark.type
        low, high = parse_watermark(start, kind), parse_watermark(end, kind)
        if high.type is WatermarkType.TIMESTAMP and high.id is not None:
            raise ConfigError(f"the end of a backfill is a timestamp, not {end!r}")
        if (
            low.id is not None
            and low.type is WatermarkType.TIMESTAMP
            and not job.watermark.tiebreaker
        ):
            raise ConfigError(
                f"job {job_id} has no watermark.tiebreaker: give the timestamp alone, not {start!r}"
            )
        if not low < high:
            raise ConfigError(
                f"the backfill window ({start}, {end}] is empty: --from must be before --to"
            )
        return Backfill(low, high)

    def can_backfill(self, job_id: str) -> bool:
        """Whether ``job_id`` is an incremental SQL job (the kind a backfill loads)."""
        job = self.job(job_id)
        return (
            isinstance(job, TableJobSpec)
            and job.load_type is LoadType.INCREMENTAL
            and job.watermark is not None
        )

    def backfill_checkpoint(self, job_id: str) -> dict[str, Any] | None:
        """The checkpoint of the job's unfinished backfill (None: it has none)."""
        return self.store.get_checkpoint(job_id, backfill=True)

    def run_all(self, **options: Any) -> list[RunRecord]:
        """Run every active job once, in file order."""
        return [
            self.run(job.job_id, **options) for job in self.config.jobs.values() if job.is_active
        ]

    def cancel(self, job_or_run: str) -> RunRecord:
        """Ask a running run (by job id or run id) to stop, wherever it runs."""
        return self.store.request_cancel(job_or_run)

    def enable(self, job_id: str) -> JobRecord:
        """Set the job active, whatever the file says, until the file's is_active changes."""
        self.job(job_id)
        return self.store.set_active(job_id, True)

    def disable(self, job_id: str) -> JobRecord:
        """Set the job inactive (the scheduler skips it) until the file's is_active changes."""
        self.job(job_id)
        return self.store.set_active(job_id, False)

    def worker(
        self, *, concurrency: int | None = None, worker_id: str | None = None, once: bool = False
    ) -> Worker:
        """A worker for this project's jobs; call ``.run()`` on it."""
        from highmark.worker import Worker

        return Worker(
            self.config, self.store, concurrency=concurrency, worker_id=worker_id, once=once
        )

    # ------------------------------------------------------------------ operations

    def alerts(
        self, *, limit: int | None = 50, job_id: str | None = None, status: str | None = None
    ) -> list[Any]:
        """``etl_alerts`` rows, newest first: what was sent and what could not be."""
        from highmark import alerts

        return alerts.list_alerts(self.store, limit=limit, job_id=job_id, status=status)

    def check_alerts(self) -> Any:
        """Raise ``stale`` alerts for jobs past their freshness SLA, and retry undelivered ones."""
        from highmark import alerts

        return alerts.check(self.store, self.config)

    def purge(self, *, dry_run: bool = False) -> Any:
        """Roll old runs up into daily summaries and delete them (``retention`` settings)."""
        from highmark import retention

        return retention.purge(self.store, self.config.retention, dry_run=dry_run)

    def metrics(self) -> bytes:
        """Prometheus text exposition of the control tables."""
        from highmark import metrics

        return metrics.render(self.store, self.config)

    # ------------------------------------------------------------------ reconcile

    def reconcile(
        self,
        job_id: str,
        *,
        repair: bool = False,
        as_run: bool = False,
        triggered_by: TriggeredBy | str = TriggeredBy.MANUAL,
        observer: RunObserver | None = None,
        cancel: CancelToken | None = None,
    ) -> Any:
        """Compare a SQL job's source and target by primary key (highmark/reconcile.py) and
        return a ``ReconcileResult``. ``repair`` fixes what differs, as a run of its own in
        ``etl_job_runs`` that leaves the watermark where it is; ``as_run`` records a plain
        comparison as a run too (failed when something differs)."""
        from highmark.config import TableJobSpec
        from highmark.config.cdc import DEFAULT_RECONCILE_CHUNK
        from highmark.errors import CheckpointError
        from highmark.movers.reconcile import ReconcileMover, reconcile_job
        from highmark.reconcile import Reconciler, ReconcileReport, ReconcileResult

        job = self.job(job_id)
        if not isinstance(job, TableJobSpec):
            raise ConfigError(f"reconcile compares SQL tables; {job_id} is a {job.kind} job")
        chunk = job.reconcile.chunk_rows if job.reconcile else DEFAULT_RECONCILE_CHUNK
        if not repair and not as_run:
            return ReconcileResult(Reconciler(self.config, job, chunk_rows=chunk).run())
        if self.store.get_checkpoint(job_id):
            raise CheckpointError(
                f"job {job_id} has the checkpoint of an unfinished run: run the job first (it "
                "resumes), then reconcile"
            )
        mover = ReconcileMover(self.config, job, repair=repair, chunk_rows=chunk)
        record = run_job(
            self.store,
            self.config,
            reconcile_job(job, mover),
            triggered_by=TriggeredBy(triggered_by),
            observer=observer,
            cancel=cancel,
        )
        report = mover.report or ReconcileReport(job_id, job.source.table, job.target.table)
        report.run_id = record.run_id
        return ReconcileResult(report, record)

    # ------------------------------------------------------------------ change data capture

    def cdc_status(self, job_id: str | None = None) -> list[Any]:
        """Each CDC job's log on its source: position applied and bytes held (``cdc_ops``)."""
        from highmark import cdc_ops

        if job_id is not None:
            self.store.get_job(job_id)
        return cdc_ops.states(self.config, self.store, job_id)

    def cdc_drop(self, job_id: str) -> list[str]:
        """Remove a CDC job's slot and publication and forget its position (its next run takes
        a new snapshot); returns what was removed."""
        from highmark import cdc_ops

        self.store.get_job(job_id)
        return cdc_ops.drop(self.config, self.store, job_id)

    # ------------------------------------------------------------------ reports

    def status(self) -> list[tuple[JobRecord, RunRecord | None]]:
        return self.store.latest_status()

    def runs(
        self,
        job_id: str | None = None,
        *,
        status: RunStatus | str | None = None,
        since: timedelta | str | datetime | None = None,
        limit: int | None = 50,
    ) -> list[RunRecord]:
        if job_id is not None:
            self.store.get_job(job_id)
        return self.store.list_runs(
            job_id=job_id,
            status=RunStatus(status) if status is not None else None,
            since=self._since(since),
            limit=limit,
        )

    def run_record(self, run_id: int) -> RunRecord:
        """One ``etl_job_runs`` record (StoreError when there is none)."""
        return self.store.get_run(run_id)


def _definition(job: JobSpec) -> JobDefinition:
    return JobDefinition(
        job_id=job.job_id,
        job_name=job.job_name,
        description=job.description,
        source_table=job.source_label[:255],
        target_table=job.target_label[:255],
        load_type=job.load_type.value,
        schedule=job.schedule,
        is_active=job.is_active,
        timeout_seconds=job.timeout_seconds,
        retry_count=job.retry_count,
        definition=job.model_dump(mode="json", exclude={"job_id"}),
        schedule_timezone=job.schedule_timezone,
    )
