"""Reports on the runs for the dashboard: each job's recent runs and its last success, for many
jobs in one query each (a part of :class:`~highmark.store.store.ControlStore`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select

from highmark.models import RunRecord, RunStatus
from highmark.store.base import StoreBase
from highmark.store.tables import etl_job_runs


class RunReports(StoreBase):
    """Runs of many jobs at once."""

    def recent_runs(self, job_ids: Sequence[str], per_job: int) -> dict[str, list[RunRecord]]:
        """The latest ``per_job`` runs of each job, newest first (the dashboard's charts)."""
        r = etl_job_runs
        if not job_ids:
            return {}
        ranked = (
            select(
                r.c.run_id,
                func.row_number()
                .over(partition_by=r.c.job_id, order_by=r.c.run_id.desc())
                .label("position"),
            )
            .where(r.c.job_id.in_(list(job_ids)))
            .subquery()
        )
        query = (
            select(r)
            .join(ranked, ranked.c.run_id == r.c.run_id)
            .where(ranked.c.position <= per_job)
            .order_by(r.c.job_id, r.c.run_id.desc())
        )
        found: dict[str, list[RunRecord]] = {job_id: [] for job_id in job_ids}
        with self._begin("cannot read etl_job_runs") as connection:
            for row in connection.execute(query):
                found[row.job_id].append(RunRecord.from_row(row))
        return found

    def last_successes(self, job_ids: Sequence[str]) -> dict[str, RunRecord]:
        """Each job's latest successful regular run (backfills do not make a job fresh)."""
        r = etl_job_runs
        if not job_ids:
            return {}
        latest = (
            select(func.max(r.c.run_id))
            .where(
                r.c.job_id.in_(list(job_ids)),
                r.c.run_status == RunStatus.SUCCESS.value,
                r.c.backfill_window.is_(None),
            )
            .group_by(r.c.job_id)
        )
        with self._begin("cannot read etl_job_runs") as connection:
            rows = connection.execute(select(r).where(r.c.run_id.in_(latest.scalar_subquery())))
            return {row.job_id: RunRecord.from_row(row) for row in rows}
