"""ControlStore: one method per operation on the control tables.

All control-table SQL lives in this package, one module per noun, assembled here into one class:

    base.py        the engine, transactions, the control database's clock
    runs.py        the run log: a run's row from its claim to its end (RunHandle), reading runs
    reports.py     runs of many jobs at once (recent runs, last successes)
    watermarks.py  the marks and their history
    rejected.py    the bad-row quarantine (etl_rejected_rows)
    store.py       opening and migrating the store, the jobs, checkpoints, maintenance

Every write that touches a live run is a compare-and-set on the run's state and its owner's
fencing token (``owner_token``): a process that lost its run (it was declared abandoned, or
cancelled) can never overwrite what happened to it. Timestamps come from the control database's
clock, so that several machines agree on leases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from highmark.db import get_engine
from highmark.errors import JobNotFoundError, StoreError
from highmark.models import JobRecord
from highmark.scheduler import next_fire
from highmark.store.fresh import create_new_sqlite_store
from highmark.store.rejected import RejectedRows
from highmark.store.reports import RunReports
from highmark.store.runs import MAX_ERROR_MESSAGE_LENGTH, RunHandle, checkpoint_column
from highmark.store.tables import HEAD_REVISION, VERSION_TABLE, etl_jobs, etl_maintenance
from highmark.store.watermarks import Watermarks

__all__ = ["MAX_ERROR_MESSAGE_LENGTH", "ControlStore", "JobDefinition", "RunHandle"]


@dataclass(frozen=True)
class JobDefinition:
    """What :meth:`ControlStore.sync_jobs` writes for one job (a row of ``etl_jobs``)."""

    job_id: str
    job_name: str
    description: str | None
    source_table: str
    target_table: str
    load_type: str
    schedule: str | None
    is_active: bool
    timeout_seconds: int
    retry_count: int
    definition: dict[str, Any]
    schedule_timezone: str | None = None


class ControlStore(RejectedRows, RunReports, Watermarks):
    """The control tables of one database (SQLite, PostgreSQL or MySQL/MariaDB)."""

    # ------------------------------------------------------------------ opening and schema

    @classmethod
    def open(cls, url: URL, *, migrate_schema: bool = True) -> ControlStore:
        """Open the store at ``url``, bringing its schema up to date unless told not to."""
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        store = cls(get_engine(url, "control"))
        if migrate_schema:
            store.ensure_schema()
        return store

    def ensure_schema(self) -> None:
        """Upgrade a new or older store; refuse a store newer than this code."""
        with self._errors("cannot open the control store"):
            revision = self._stored_revision()
            if revision == HEAD_REVISION:
                return  # the common case, without importing Alembic (start-up time)
            if revision is None and create_new_sqlite_store(self.engine):
                return  # a new SQLite store, made at head in one step (store/fresh.py)
            from highmark.store import migrate

            if not migrate.is_current(self.engine):
                migrate.upgrade(self.engine)

    def _stored_revision(self) -> str | None:
        """The schema revision recorded in the store, or None (no table, or several rows)."""
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        except SQLAlchemyError:
            return None
        return str(rows[0][0]) if len(rows) == 1 else None

    def migrate(self) -> tuple[str | None, str]:
        from highmark.store import migrate

        with self._errors("cannot migrate the control store"):
            return migrate.upgrade(self.engine)

    # ------------------------------------------------------------------ jobs

    def sync_jobs(self, definitions: Sequence[JobDefinition]) -> list[str]:
        """Upsert the project's jobs; jobs no longer defined become inactive, keeping history.
        Returns the jobs that became inactive now because they left the file."""
        wanted = {d.job_id: d for d in definitions}
        for attempt in range(2):
            try:
                with self._begin("cannot sync jobs into etl_jobs") as connection:
                    return self._sync_jobs(connection, wanted)
            except StoreError:
                if attempt:  # a concurrent process inserted the same job: one retry settles it
                    raise
        return []

    def _sync_jobs(self, connection: Connection, wanted: dict[str, JobDefinition]) -> list[str]:
        columns = [
            "job_name", "description", "source_table", "target_table", "load_type",
            "schedule", "schedule_timezone", "timeout_seconds", "retry_count", "definition",
        ]  # fmt: skip
        state = ["is_active", "is_active_override", "next_due_at"]
        existing = {
            row.job_id: row
            for row in connection.execute(
                select(etl_jobs.c.job_id, *(etl_jobs.c[c] for c in [*columns, *state]))
            )
        }
        now = self._now(connection)
        new_rows: list[dict[str, Any]] = []
        for job_id, definition in wanted.items():
            values: dict[str, Any] = {c: getattr(definition, c) for c in columns}
            row = existing.get(job_id)
            if row is None:
                values.update(
                    job_id=job_id,
                    created_at=now,
                    updated_at=now,
                    is_active=definition.is_active,
                    next_due_at=_first_due(definition, now),
                )
                new_rows.append(values)
                continue
            override = row.is_active_override
            file_before = (row.definition or {}).get("is_active", True)
            if override is not None and file_before != definition.is_active:
                override = None  # the file changed its mind about this job: the file wins again
            active = definition.is_active if override is None else override
            values.update(is_active=active, is_active_override=override)
            rescheduled = (row.schedule, row.schedule_timezone) != (
                definition.schedule,
                definition.schedule_timezone,
            )
            if (
                rescheduled
                or (active and not row.is_active)
                or (definition.schedule and row.next_due_at is None)
            ):
                # Due at the fire times after the job (or its schedule) is registered.
                values["next_due_at"] = _first_due(definition, now)
            if any(getattr(row, c) != v for c, v in values.items()):
                connection.execute(
                    update(etl_jobs)
                    .where(etl_jobs.c.job_id == job_id)
                    .values(updated_at=now, **values)
                )
        for start in range(0, len(new_rows), 1000):  # new jobs in batches, not a row at a time
            connection.execute(insert(etl_jobs), new_rows[start : start + 1000])
        gone = [
            job_id for job_id, row in existing.items() if job_id not in wanted and row.is_active
        ]
        if gone:
            connection.execute(
                update(etl_jobs)
                .where(etl_jobs.c.job_id.in_(gone))
                .values(is_active=False, updated_at=now)
            )
        return gone

    def set_active(self, job_id: str, active: bool) -> JobRecord:
        """`highmark enable/disable`: override the file's is_active until the file changes it."""
        self.get_job(job_id)
        with self._begin("cannot change the job") as connection:
            now = self._now(connection)
            row = connection.execute(
                select(
                    etl_jobs.c.schedule, etl_jobs.c.schedule_timezone, etl_jobs.c.is_active
                ).where(etl_jobs.c.job_id == job_id)
            ).one()
            values: dict[str, Any] = {
                "is_active": active,
                "is_active_override": active,
                "updated_at": now,
            }
            if active and not row.is_active and row.schedule:
                values["next_due_at"] = next_fire(row.schedule, row.schedule_timezone, now)
            connection.execute(update(etl_jobs).where(etl_jobs.c.job_id == job_id).values(**values))
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> JobRecord:
        with self._begin("cannot read etl_jobs") as connection:
            row = connection.execute(select(etl_jobs).where(etl_jobs.c.job_id == job_id)).first()
        if row is None:
            raise JobNotFoundError(f"unknown job {job_id!r}")
        return JobRecord.from_row(row)

    def list_jobs(self, *, active_only: bool = False) -> list[JobRecord]:
        query = select(etl_jobs).order_by(etl_jobs.c.job_id)
        if active_only:
            query = query.where(etl_jobs.c.is_active.is_(True))
        with self._begin("cannot read etl_jobs") as connection:
            return [JobRecord.from_row(row) for row in connection.execute(query)]

    # ------------------------------------------------------------------ checkpoints

    def get_checkpoint(self, job_id: str, *, backfill: bool = False) -> dict[str, Any] | None:
        """The job's checkpoint (its backfill's, with ``backfill``)."""
        job = self.get_job(job_id)
        return job.backfill_checkpoint if backfill else job.checkpoint_data

    def reset_checkpoint(self, job_id: str, *, backfill: bool = False) -> None:
        self.get_job(job_id)
        with self._begin("cannot reset the checkpoint") as connection:
            connection.execute(
                update(etl_jobs)
                .where(etl_jobs.c.job_id == job_id)
                .values({checkpoint_column(backfill): None})
            )

    # ------------------------------------------------------------------ maintenance

    def claim_maintenance(self, task: str, every: timedelta, worker_id: str) -> bool:
        """Claim periodic ``task`` (purge, freshness checks…) if ``every`` has passed since it
        last ran, or it never ran: a compare-and-set on ``etl_maintenance.last_run_at``, so that
        of many workers asking at once exactly one gets it. The claim is recorded before the task
        runs."""
        t = etl_maintenance
        with self._begin(f"cannot claim the maintenance task {task!r}") as connection:
            now = self._now(connection)
            statement: Any
            if connection.dialect.name == "postgresql":
                from sqlalchemy.dialects import postgresql

                statement = postgresql.insert(t).on_conflict_do_nothing()
            elif connection.dialect.name == "mysql":
                from sqlalchemy.dialects import mysql  # imported where used: ~90 ms

                statement = mysql.insert(t).prefix_with("IGNORE")
            else:
                from sqlalchemy.dialects import sqlite

                statement = sqlite.insert(t).on_conflict_do_nothing()
            connection.execute(statement.values(task=task, last_run_at=None, last_worker_id=None))
            result = connection.execute(
                update(t)
                .where(
                    t.c.task == task,
                    t.c.last_run_at.is_(None) | (t.c.last_run_at <= now - every),
                )
                .values(last_run_at=now, last_worker_id=worker_id[:255])
            )
            return bool(result.rowcount == 1)

    def last_maintenance(self, task: str) -> tuple[datetime | None, str | None]:
        """When ``task`` last ran, and on which worker."""
        t = etl_maintenance
        with self._begin("cannot read etl_maintenance") as connection:
            row = connection.execute(
                select(t.c.last_run_at, t.c.last_worker_id).where(t.c.task == task)
            ).first()
        return (row.last_run_at, row.last_worker_id) if row else (None, None)


def _first_due(definition: JobDefinition, now: datetime) -> datetime | None:
    if not definition.schedule:
        return None
    return next_fire(definition.schedule, definition.schedule_timezone, now)
