"""Metrics SQL: what the control tables say about every job, read in one consistent snapshot.

A snapshot matters because a purge moves runs from ``etl_job_runs`` into ``etl_run_summaries`` in
one transaction: read in two, a run could be counted twice or not at all, and a counter would
jump. PostgreSQL and MySQL/MariaDB read in one ``REPEATABLE READ`` transaction; SQLite's
transactions are serialisable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, case, func, select

from highmark.models import RunStatus
from highmark.store.store import ControlStore
from highmark.store.tables import etl_job_runs, etl_jobs, etl_run_summaries, etl_watermarks

ROW_KINDS = ("read", "written", "updated", "deleted", "rejected")
# Purged runs are counted in etl_run_summaries by status under these columns.
_SUMMARY_STATUS = {
    RunStatus.SUCCESS.value: "successes",
    RunStatus.FAILED.value: "failures",
    RunStatus.CANCELLED.value: "cancelled",
}


@dataclass(frozen=True)
class Durations:
    """Finished runs' ``duration_seconds`` as a histogram: cumulative counts per upper bound."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    total: float


@dataclass(frozen=True)
class JobMetrics:
    """One job, as the metrics see it."""

    job_id: str
    is_active: bool
    created_at: datetime | None
    runs: dict[str, int] = field(default_factory=dict)  # finished runs by status, purged included
    rows: dict[str, int] = field(default_factory=dict)  # by kind, purged runs included
    running: int = 0
    durations: Durations | None = None  # runs still in etl_job_runs
    last_success_at: datetime | None = None
    last_success_day: date | None = None  # the latest day with a purged success
    watermark_updated_at: datetime | None = None


@dataclass(frozen=True)
class MetricsSnapshot:
    now: datetime  # the control database's clock
    jobs: dict[str, JobMetrics]


def read_metrics(store: ControlStore, buckets: Sequence[float]) -> MetricsSnapshot:
    """Every job's runs, rows, durations, freshness and watermark age, in one snapshot."""
    with (
        store._errors("cannot read metrics from the control store"),
        store.engine.connect() as connection,
    ):
        if connection.dialect.name != "sqlite":
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            return _read(store, connection, buckets)


def _read(store: ControlStore, connection: Connection, buckets: Sequence[float]) -> MetricsSnapshot:
    now = store._now(connection)
    jobs: dict[str, dict[str, Any]] = {
        row.job_id: {
            "job_id": row.job_id,
            "is_active": bool(row.is_active),
            "created_at": row.created_at,
            "runs": dict.fromkeys(_SUMMARY_STATUS, 0),
            "rows": dict.fromkeys(ROW_KINDS, 0),
        }
        for row in connection.execute(
            select(etl_jobs.c.job_id, etl_jobs.c.is_active, etl_jobs.c.created_at)
        )
    }

    def job(job_id: str) -> dict[str, Any]:
        # Every run's job is in etl_jobs (a foreign key); summaries have none, so be lenient.
        return jobs.setdefault(
            job_id,
            {
                "job_id": job_id,
                "is_active": False,
                "created_at": None,
                "runs": dict.fromkeys(_SUMMARY_STATUS, 0),
                "rows": dict.fromkeys(ROW_KINDS, 0),
            },
        )

    r = etl_job_runs
    for row in connection.execute(
        select(
            r.c.job_id,
            r.c.run_status,
            func.count(),
            *(func.coalesce(func.sum(r.c[f"rows_{k}"]), 0) for k in ROW_KINDS),
        ).group_by(r.c.job_id, r.c.run_status)
    ):
        data = job(row.job_id)
        if row.run_status == RunStatus.RUNNING.value:
            data["running"] = int(row[2])
            continue  # rows and runs count once a run has finished
        data["runs"][row.run_status] = data["runs"].get(row.run_status, 0) + int(row[2])
        for i, kind in enumerate(ROW_KINDS):
            data["rows"][kind] += int(row[3 + i])

    m = etl_run_summaries
    for row in connection.execute(
        select(
            m.c.job_id,
            *(func.coalesce(func.sum(m.c[c]), 0) for c in _SUMMARY_STATUS.values()),
            *(func.coalesce(func.sum(m.c[f"rows_{k}"]), 0) for k in ROW_KINDS),
            func.max(case((m.c.successes > 0, m.c.day))),
        ).group_by(m.c.job_id)
    ):
        data = job(row.job_id)
        for i, status in enumerate(_SUMMARY_STATUS):
            data["runs"][status] += int(row[1 + i])
        for i, kind in enumerate(ROW_KINDS):
            data["rows"][kind] += int(row[1 + len(_SUMMARY_STATUS) + i])
        data["last_success_day"] = _as_date(row[-1])

    finished = r.c.duration_seconds.is_not(None) & (r.c.run_status != RunStatus.RUNNING.value)
    for row in connection.execute(
        select(
            r.c.job_id,
            func.count(),
            func.coalesce(func.sum(r.c.duration_seconds), 0),
            *(func.sum(case((r.c.duration_seconds <= bound, 1), else_=0)) for bound in buckets),
        )
        .where(finished)
        .group_by(r.c.job_id)
    ):
        job(row.job_id)["durations"] = Durations(
            buckets=tuple((bound, int(row[3 + i])) for i, bound in enumerate(buckets)),
            count=int(row[1]),
            total=float(row[2]),
        )

    for row in connection.execute(
        select(r.c.job_id, func.max(r.c.finished_at))
        .where(r.c.run_status == RunStatus.SUCCESS.value, r.c.backfill_window.is_(None))
        .group_by(r.c.job_id)
    ):
        job(row.job_id)["last_success_at"] = row[1]

    w = etl_watermarks
    for row in connection.execute(
        select(w.c.job_id, func.max(w.c.last_updated_at)).group_by(w.c.job_id)
    ):
        job(row.job_id)["watermark_updated_at"] = row[1]

    return MetricsSnapshot(now=now, jobs={k: JobMetrics(**v) for k, v in sorted(jobs.items())})


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))  # SQLite: max() over a CASE has no DATE type
