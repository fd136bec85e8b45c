"""Retention: purge old run detail in bounded batches, keeping per-day summaries and watermarks.

Following the reference's retention policy (detail 30-90 days, summaries 1-2 years, watermarks
indefinitely):

* runs started more than ``retention.runs_days`` ago (never a ``running`` one) are added to their
  job's ``etl_run_summaries`` row of that day, and deleted, in the same transaction;
* alerts created, and finished cron slots last due, more than ``runs_days`` ago are deleted;
* summaries of days more than ``retention.summary_days`` ago are deleted;
* entries of the REST API's audit log more than ``retention.audit_days`` old are deleted;
* ``etl_watermarks`` is never touched.

Every table is purged ``retention.batch_size`` rows per transaction, so that purging millions of
rows never holds long locks, and a purge killed between batches has lost nothing: the runs it
deleted are exactly the runs it summarised. All cutoffs come from the control database's clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from highmark import failpoints
from highmark.clock import ensure_utc
from highmark.config import RetentionSettings
from highmark.errors import HighmarkError
from highmark.store.retention import Batch, RetentionStore, Span
from highmark.store.store import ControlStore
from highmark.store.tables import (
    etl_alerts,
    etl_audit,
    etl_job_runs,
    etl_job_slots,
    etl_run_summaries,
)

log = logging.getLogger(__name__)

PURGE_TASK = "purge"
BATCH_ATTEMPTS = 5
# The tables a purge deletes from, in the order it purges them.
PURGED_TABLES = (
    etl_job_runs.name,
    etl_alerts.name,
    etl_job_slots.name,
    etl_run_summaries.name,
    etl_audit.name,
)


@dataclass(frozen=True)
class TablePurge:
    """What a purge deleted from one table (or would delete, on a dry run)."""

    table: str
    before: datetime | date  # rows older than this go
    rows: int = 0
    batches: int = 0
    oldest: datetime | date | None = None
    newest: datetime | date | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "before": _json_time(self.before),
            "rows": self.rows,
            "batches": self.batches,
            "oldest": _json_time(self.oldest),
            "newest": _json_time(self.newest),
        }


@dataclass(frozen=True)
class PurgeReport:
    """The outcome of :func:`purge`: per table, what went; the summary rows written; the running
    runs older than the cutoff that were kept."""

    dry_run: bool
    now: datetime
    tables: dict[str, TablePurge] = field(default_factory=dict)
    summaries_written: int = 0
    running_kept: int = 0

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "now": _json_time(self.now),
            "tables": [t.to_json() for t in self.tables.values()],
            "summaries_written": self.summaries_written,
            "running_kept": self.running_kept,
        }


def purge(
    store: ControlStore,
    settings: RetentionSettings,
    *,
    dry_run: bool = False,
    on_batch: Callable[[str, Batch], None] | None = None,
) -> PurgeReport:
    """Purge what ``settings`` says is old (see the module's docstring); ``dry_run``: only count
    it. ``on_batch(table, batch)`` is called after each committed batch."""
    retention = RetentionStore(store)
    now = retention.now()
    runs_before = now - timedelta(days=settings.runs_days)
    summaries_before = (now - timedelta(days=settings.summary_days)).date()
    audit_before = now - timedelta(days=settings.audit_days)
    cutoffs: dict[str, datetime | date] = {
        etl_job_runs.name: runs_before,
        etl_alerts.name: runs_before,
        etl_job_slots.name: runs_before,
        etl_run_summaries.name: summaries_before,
        etl_audit.name: audit_before,
    }
    spans, running_kept = retention.preview(runs_before, summaries_before, audit_before)
    if dry_run:
        return PurgeReport(
            dry_run=True,
            now=now,
            tables={
                name: _table(name, cutoffs[name], spans[name], batches=0) for name in PURGED_TABLES
            },
            running_kept=running_kept,
        )
    steps: dict[str, Callable[[int], Batch]] = {
        etl_job_runs.name: lambda n: retention.purge_runs(runs_before, n),
        etl_alerts.name: lambda n: retention.purge_alerts(runs_before, n),
        etl_job_slots.name: lambda n: retention.purge_slots(runs_before, n),
        etl_run_summaries.name: lambda n: retention.purge_summaries(summaries_before, n),
        etl_audit.name: lambda n: retention.purge_audit(audit_before, n),
    }
    tables: dict[str, TablePurge] = {}
    written = 0
    for name in PURGED_TABLES:
        if not spans[name].rows:  # nothing old: no batch, no lock
            tables[name] = _table(name, cutoffs[name], Span(), batches=0)
            continue
        total, batches = Span(), 0
        while True:
            batch = _retrying(steps[name], settings.batch_size)
            if not batch.span.rows:
                break
            total, batches, written = total + batch.span, batches + 1, written + batch.summaries
            log.debug("purge: %s: batch %s deleted %s rows", name, batches, batch.span.rows)
            if on_batch is not None:
                on_batch(name, batch)
            failpoints.reach("between_purge_batches")
            if batch.span.rows < settings.batch_size:
                break  # the last one (rows locked by a concurrent purge are that purge's)
        tables[name] = _table(name, cutoffs[name], total, batches=batches)
    return PurgeReport(
        dry_run=False, now=now, tables=tables, summaries_written=written, running_kept=running_kept
    )


def _retrying(step: Callable[[int], Batch], limit: int) -> Batch:
    """One batch, tried again when it failed for a reason that passes (a deadlock with another
    purge, a lock wait): the failed try was rolled back whole."""
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            return step(limit)
        except HighmarkError as exc:
            if not exc.retryable or attempt == BATCH_ATTEMPTS:
                raise
            log.info("purge: batch failed (%s); trying again", exc)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def maybe_purge(
    store: ControlStore, settings: RetentionSettings, worker_id: str
) -> PurgeReport | None:
    """Purge if ``settings.purge_every`` has passed since the last purge by any worker (workers
    call this in their loop; of several asking at once, one purges). Returns the report, or None
    when it was not time, ``purge_every`` is unset, or the purge failed: never raises, since a
    failing purge must not stop a worker (it is tried again after ``purge_every``)."""
    if settings.purge_every is None:
        return None
    try:
        if not store.claim_maintenance(PURGE_TASK, settings.purge_every, worker_id):
            return None
        report = purge(store, settings)
    except HighmarkError as exc:
        log.warning("worker %s: purge failed: %s", worker_id, exc)
        return None
    log.info(
        "worker %s: purged %s",
        worker_id,
        ", ".join(f"{t.rows} from {t.table}" for t in report.tables.values() if t.rows)
        or "nothing (nothing was old enough)",
    )
    return report


def report_text(report: PurgeReport) -> str:
    """The report as the lines ``highmark purge`` prints."""
    verb = "would delete" if report.dry_run else "deleted"
    lines = []
    for t in report.tables.values():
        line = f"{t.table}: {verb} {t.rows:,} row{'' if t.rows == 1 else 's'}"
        if not report.dry_run and t.batches:
            line += f" in {t.batches} batch{'' if t.batches == 1 else 'es'}"
        if t.rows:
            line += f", {_text_time(t.oldest)} … {_text_time(t.newest)}"
        line += f" (older than {_text_time(t.before)})"
        lines.append(line)
    if not report.dry_run:
        lines.append(
            f"etl_run_summaries: {report.summaries_written:,} day rows written or added to"
        )
    if report.running_kept:
        lines.append(
            f"etl_job_runs: kept {report.running_kept:,} running run(s) older than the cutoff"
        )
    lines.append("etl_watermarks: kept (never purged)")
    if report.dry_run:
        lines.append("dry run: nothing was changed")
    return "\n".join(lines)


def _table(name: str, before: datetime | date, span: Span, *, batches: int) -> TablePurge:
    return TablePurge(name, before, span.rows, batches, span.oldest, span.newest)


def _json_time(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return ensure_utc(value).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _text_time(value: datetime | date | None) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else value.isoformat()
