"""ControlStore: one method per operation on the control tables.

All control-table SQL lives here. Every write that touches a live run is a compare-and-set on the
run's state and its owner's fencing token (``owner_token``): a process that lost its run (it was
declared abandoned, or cancelled) can never overwrite what happened to it. Timestamps come from the
control database's clock, so that several machines agree on leases.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from highmark import failpoints
from highmark.clock import ensure_utc
from highmark.db import get_engine
from highmark.errors import (
    ClaimLostError,
    JobNotFoundError,
    LeaseLostError,
    StoreError,
    one_line,
    translate_db_error,
)
from highmark.models import (
    Counts,
    JobRecord,
    MarkUpdate,
    RunRecord,
    RunStatus,
    Watermark,
    WatermarkRecord,
    later_of,
)
from highmark.redact import scrub, scrub_json
from highmark.scheduler import next_fire
from highmark.store.tables import (
    HEAD_REVISION,
    VERSION_TABLE,
    etl_job_runs,
    etl_job_slots,
    etl_jobs,
    etl_maintenance,
    etl_watermarks,
)

MAX_ERROR_MESSAGE_LENGTH = 2000


@dataclass(frozen=True)
class RunHandle:
    """What the owner of a live run holds: its id and its fencing token."""

    run_id: int
    job_id: str
    owner_token: str
    started_at: datetime


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


class ControlStore:
    """The control tables of one database (SQLite, PostgreSQL or MySQL/MariaDB)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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
            if self._stored_revision() == HEAD_REVISION:
                return  # the common case, without importing Alembic (start-up time)
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

    @contextmanager
    def _errors(self, context: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise translate_db_error(exc, StoreError, context) from exc

    @contextmanager
    def _begin(self, context: str) -> Iterator[Connection]:
        with self._errors(context), self.engine.begin() as connection:
            yield connection

    def _now(self, connection: Connection) -> datetime:
        """The control database's clock, as an aware UTC datetime."""
        dialect = connection.dialect.name
        if dialect == "postgresql":
            value = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
        elif dialect == "mysql":
            value = connection.execute(text("SELECT UTC_TIMESTAMP(6)")).scalar_one()
        else:
            value = connection.execute(
                text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
            ).scalar_one()
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return ensure_utc(value)

    def now(self) -> datetime:
        with self._begin("cannot read the control store's clock") as connection:
            return self._now(connection)

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

    def get_checkpoint(self, job_id: str) -> dict[str, Any] | None:
        return self.get_job(job_id).checkpoint_data

    def reset_checkpoint(self, job_id: str) -> None:
        self.get_job(job_id)
        with self._begin("cannot reset the checkpoint") as connection:
            connection.execute(
                update(etl_jobs).where(etl_jobs.c.job_id == job_id).values(checkpoint_data=None)
            )

    def save_checkpoint(
        self, handle: RunHandle, checkpoint: dict[str, Any], counts: Counts
    ) -> bool:
        """Record progress of a live run: its counts, a heartbeat and the job's checkpoint.

        Returns True when someone asked the run to stop (`highmark cancel`)."""
        with self._begin("cannot save the checkpoint") as connection:
            cancel = self._touch_run(connection, handle, counts)
            connection.execute(
                update(etl_jobs)
                .where(etl_jobs.c.job_id == handle.job_id)
                .values(checkpoint_data=checkpoint)
            )
        return cancel

    # ------------------------------------------------------------------ runs

    def start_run(
        self,
        job_id: str,
        *,
        triggered_by: str,
        host: str,
        pid: int,
        watermark_start: Watermark | None,
        scheduled_for: datetime | None = None,
        attempt: int | None = None,
        worker_id: str | None = None,
    ) -> RunHandle | None:
        """Insert the run's row as ``running``; None when the job already has a live run.

        The unique ``live_job_id`` makes the database itself refuse a second live run; the unique
        (job, scheduled_for, attempt) refuses a second run of one attempt at a cron slot.
        """
        token = uuid.uuid4().hex
        extra = {"scheduled_for": scheduled_for, "attempt": attempt, "worker_id": worker_id}
        with self._errors("cannot start a run"):
            try:
                return self._insert_run(
                    job_id, token, triggered_by, host, pid, watermark_start, extra
                )
            except IntegrityError as exc:
                # Every database names the violated unique key's column in the first line of its
                # message (a foreign-key error's detail line may quote the job id instead).
                if "live_job_id" in one_line(str(exc.orig)):
                    return None
                raise

    def _insert_run(
        self,
        job_id: str,
        token: str,
        triggered_by: str,
        host: str,
        pid: int,
        watermark_start: Watermark | None,
        extra: dict[str, Any],
    ) -> RunHandle:
        with self.engine.begin() as connection:
            now = self._now(connection)
            result = connection.execute(
                insert(etl_job_runs).values(
                    job_id=job_id,
                    run_status=RunStatus.RUNNING.value,
                    started_at=now,
                    heartbeat_at=now,
                    triggered_by=triggered_by,
                    host=host,
                    pid=pid,
                    owner_token=token,
                    live_job_id=job_id,
                    **extra,
                    rows_read=0,
                    rows_written=0,
                    rows_updated=0,
                    rows_deleted=0,
                    **_watermark_columns("watermark_start", watermark_start),
                )
            )
            run_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            if extra["scheduled_for"] is not None:
                self._check_claim(connection, job_id, extra)
        return RunHandle(run_id=run_id, job_id=job_id, owner_token=token, started_at=now)

    def _check_claim(self, connection: Connection, job_id: str, slot: dict[str, Any]) -> None:
        """A scheduled run starts only while its worker holds its slot's claim. The slot's row
        is locked after the run's row is inserted (the insert's foreign key locks the job's row
        first, as enqueuing does: job, then its slots, so the two never deadlock) and until the
        run's row is committed: a worker taking over a lapsed claim either comes first (and
        this run rolls back, never started) or finds the run."""
        s = etl_job_slots
        row = connection.execute(
            _for_update(
                select(s.c.status, s.c.worker_id, s.c.attempt).where(
                    s.c.job_id == job_id, s.c.scheduled_for == slot["scheduled_for"]
                ),
                connection,
            )
        ).first()
        if row is None or (row.status, row.worker_id, row.attempt) != (
            "claimed",  # SlotStatus.CLAIMED (highmark.store.queue)
            slot["worker_id"],
            slot["attempt"],
        ):
            raise ClaimLostError(
                f"job {job_id}: worker {slot['worker_id']} no longer holds the slot "
                f"{slot['scheduled_for'].isoformat()} attempt {slot['attempt']}; not started"
            )

    def live_run(self, job_id: str) -> RunRecord | None:
        with self._begin("cannot read etl_job_runs") as connection:
            row = connection.execute(
                select(etl_job_runs).where(etl_job_runs.c.live_job_id == job_id)
            ).first()
        return RunRecord.from_row(row) if row else None

    def set_upper_bound(self, handle: RunHandle, bound: str | None, reason: str | None) -> None:
        with self._begin("cannot record the run's upper bound") as connection:
            self._cas_run(connection, handle, upper_bound=bound, upper_bound_reason=reason)

    def heartbeat(self, handle: RunHandle, counts: Counts | None = None) -> bool:
        """Prove the run's owner alive; True when someone asked the run to stop."""
        with self._begin("cannot heartbeat the run") as connection:
            return self._touch_run(connection, handle, counts)

    def _touch_run(self, connection: Connection, handle: RunHandle, counts: Counts | None) -> bool:
        values: dict[str, Any] = {"heartbeat_at": self._now(connection)}
        if counts is not None:
            values.update(_count_columns(counts))
        self._cas_run(connection, handle, **values)
        return bool(
            connection.execute(
                select(etl_job_runs.c.cancel_requested).where(
                    etl_job_runs.c.run_id == handle.run_id
                )
            ).scalar()
        )

    def request_cancel(self, job_or_run: str) -> RunRecord:
        """Ask a live run (by job id or run id) to stop; it ends `cancelled` at its next batch."""
        with self._begin("cannot cancel the run") as connection:
            query = select(etl_job_runs).where(etl_job_runs.c.run_status == RunStatus.RUNNING.value)
            if job_or_run.isdigit():
                query = query.where(
                    (etl_job_runs.c.run_id == int(job_or_run))
                    | (etl_job_runs.c.live_job_id == job_or_run)
                )
            else:
                query = query.where(etl_job_runs.c.live_job_id == job_or_run)
            row = connection.execute(query).first()
            if row is None:
                raise JobNotFoundError(f"no running run of job or run id {job_or_run!r}")
            connection.execute(
                update(etl_job_runs)
                .where(etl_job_runs.c.run_id == row.run_id)
                .values(cancel_requested=True)
            )
        return self.get_run(row.run_id)

    def _cas_run(self, connection: Connection, handle: RunHandle, **values: Any) -> None:
        """Update a live run only if this process still owns it; otherwise raise LeaseLostError."""
        result = connection.execute(
            update(etl_job_runs)
            .where(
                etl_job_runs.c.run_id == handle.run_id,
                etl_job_runs.c.owner_token == handle.owner_token,
                etl_job_runs.c.run_status == RunStatus.RUNNING.value,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            current = connection.execute(
                select(etl_job_runs.c.run_status, etl_job_runs.c.error_message).where(
                    etl_job_runs.c.run_id == handle.run_id
                )
            ).first()
            state = f"{current.run_status}: {current.error_message}" if current else "gone"
            raise LeaseLostError(
                f"run {handle.run_id} is no longer owned by this process ({state})"
            )

    def finish_success(
        self,
        handle: RunHandle,
        counts: Counts,
        *,
        marks: Sequence[MarkUpdate] = (),
        mark_tables: Sequence[str] = (),
        notes: list[str] | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> RunRecord:
        """End a run ``success`` and move its marks, in one transaction.

        Each mark moves only forward; the checkpoint becomes ``checkpoint`` (by default it is
        cleared: what a job keeps for its next run, such as a Graph delta link, is set here).
        ``watermark_end`` is the greatest of the job's marks on ``mark_tables`` after the move.
        """
        with self._begin("cannot finish the run") as connection:
            now = self._now(connection)
            for mark in marks:
                self._advance_watermark(connection, handle, mark, now)
            committed = _greatest_mark(connection, handle.job_id, mark_tables)
            self._cas_run(
                connection,
                handle,
                run_status=RunStatus.SUCCESS.value,
                finished_at=now,
                duration_seconds=_duration(handle.started_at, now),
                heartbeat_at=now,
                live_job_id=None,
                notes=[scrub(n) for n in notes] if notes else None,
                **_count_columns(counts),
                **_watermark_columns("watermark_end", committed),
            )
            connection.execute(
                update(etl_jobs)
                .where(etl_jobs.c.job_id == handle.job_id)
                .values(checkpoint_data=checkpoint)
            )
            failpoints.reach("during_final_commit")
        return self.get_run(handle.run_id)

    def _advance_watermark(
        self, connection: Connection, handle: RunHandle, mark: MarkUpdate, now: datetime
    ) -> Watermark:
        w = etl_watermarks
        where = (w.c.job_id == handle.job_id, w.c.source_table == mark.source_table)
        current_row = connection.execute(_for_update(select(w).where(*where), connection)).first()
        current = WatermarkRecord.from_row(current_row).watermark() if current_row else None
        candidate = mark.value
        if current is not None and current.type is candidate.type and current >= candidate:
            return current  # never backward; nothing newer was loaded
        values = {
            "watermark_column": mark.column,
            "watermark_type": candidate.type.value,
            "last_value_timestamp": candidate.ts,
            "last_value_integer": candidate.id,
            "last_successful_run_id": handle.run_id,
            "last_updated_at": now,
        }
        if current_row is None:
            connection.execute(
                insert(w).values(job_id=handle.job_id, source_table=mark.source_table, **values)
            )
        else:
            connection.execute(update(w).where(*where).values(**values))
        return candidate

    def finish_failed(
        self,
        handle: RunHandle,
        *,
        status: RunStatus,
        error_message: str,
        error_details: dict[str, Any] | None,
        counts: Counts,
        notes: list[str] | None = None,
    ) -> RunRecord:
        """End a run ``failed`` or ``cancelled``; the watermark stays, the checkpoint is kept."""
        with self._begin("cannot finish the run") as connection:
            now = self._now(connection)
            self._cas_run(
                connection,
                handle,
                run_status=status.value,
                finished_at=now,
                duration_seconds=_duration(handle.started_at, now),
                heartbeat_at=now,
                live_job_id=None,
                error_message=_clip(scrub(error_message)),
                error_details=scrub_json(error_details),
                notes=[scrub(n) for n in notes] if notes else None,
                **_count_columns(counts),
            )
        return self.get_run(handle.run_id)

    def abandon_run(self, run: RunRecord, reason: str, *, kind: str = "abandoned") -> bool:
        """Mark a live run whose owner is gone (or was killed: ``kind="timeout"``) as ``failed``;
        False if it changed meanwhile."""
        with self._begin("cannot mark the run abandoned") as connection:
            now = self._now(connection)
            result = connection.execute(
                update(etl_job_runs)
                .where(
                    etl_job_runs.c.run_id == run.run_id,
                    etl_job_runs.c.run_status == RunStatus.RUNNING.value,
                    _same_token(run),
                )
                .values(
                    run_status=RunStatus.FAILED.value,
                    finished_at=now,
                    duration_seconds=_duration(run.started_at, now),
                    live_job_id=None,
                    error_message=_clip(scrub(reason)),
                    error_details={
                        "reason": kind,
                        "retryable": True,
                        "error_class": "retryable",
                        "exception_type": "AbandonedRun" if kind == "abandoned" else "RunTimeout",
                        "message": scrub(reason),
                    },
                )
            )
            return result.rowcount == 1

    def get_run(self, run_id: int) -> RunRecord:
        with self._begin("cannot read etl_job_runs") as connection:
            row = connection.execute(
                select(etl_job_runs).where(etl_job_runs.c.run_id == run_id)
            ).first()
        if row is None:
            raise StoreError(f"no run {run_id}")
        return RunRecord.from_row(row)

    def list_runs(
        self,
        *,
        job_id: str | None = None,
        status: RunStatus | None = None,
        since: datetime | None = None,
        limit: int | None = 50,
    ) -> list[RunRecord]:
        """Runs, newest first; ``status=failed, since=now-24h`` is the reference's failure query."""
        query = select(etl_job_runs).order_by(
            etl_job_runs.c.started_at.desc(), etl_job_runs.c.run_id.desc()
        )
        if job_id is not None:
            query = query.where(etl_job_runs.c.job_id == job_id)
        if status is not None:
            query = query.where(etl_job_runs.c.run_status == status.value)
        if since is not None:
            query = query.where(etl_job_runs.c.started_at >= since)
        if limit is not None:
            query = query.limit(limit)
        with self._begin("cannot read etl_job_runs") as connection:
            return [RunRecord.from_row(row) for row in connection.execute(query)]

    def latest_status(
        self, *, active_only: bool = True
    ) -> list[tuple[JobRecord, RunRecord | None]]:
        """The latest run of every active job (the reference's "latest job status" query)."""
        latest_ids = select(func.max(etl_job_runs.c.run_id)).group_by(etl_job_runs.c.job_id)
        jobs_query = select(etl_jobs).order_by(etl_jobs.c.job_id)
        if active_only:
            jobs_query = jobs_query.where(etl_jobs.c.is_active.is_(True))
        with self._begin("cannot read the job status") as connection:
            jobs = [JobRecord.from_row(row) for row in connection.execute(jobs_query)]
            runs = {
                row.job_id: RunRecord.from_row(row)
                for row in connection.execute(
                    select(etl_job_runs).where(
                        etl_job_runs.c.run_id.in_(latest_ids.scalar_subquery())
                    )
                )
            }
        return [(job, runs.get(job.job_id)) for job in jobs]

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

    # ------------------------------------------------------------------ watermarks

    def get_watermarks(self, job_id: str) -> list[WatermarkRecord]:
        """The job's marks, one per source table, by source table."""
        w = etl_watermarks
        with self._begin("cannot read etl_watermarks") as connection:
            rows = connection.execute(
                select(w).where(w.c.job_id == job_id).order_by(w.c.source_table)
            ).all()
        return [WatermarkRecord.from_row(row) for row in rows]

    def get_watermark(self, job_id: str) -> WatermarkRecord | None:
        """The job's mark (the first, for a job that keeps several)."""
        marks = self.get_watermarks(job_id)
        return marks[0] if marks else None

    def set_watermarks(self, job_id: str, marks: Sequence[MarkUpdate]) -> list[WatermarkRecord]:
        """Replace a job's marks by hand (a backfill may move them backward on purpose)."""
        self.get_job(job_id)
        with self._begin("cannot set the watermark") as connection:
            self._refuse_if_live(connection, job_id)
            now = self._now(connection)
            connection.execute(sa_delete(etl_watermarks).where(etl_watermarks.c.job_id == job_id))
            for mark in marks:
                connection.execute(
                    insert(etl_watermarks).values(
                        job_id=job_id,
                        source_table=mark.source_table,
                        watermark_column=mark.column,
                        watermark_type=mark.value.type.value,
                        last_value_timestamp=mark.value.ts,
                        last_value_integer=mark.value.id,
                        last_successful_run_id=None,
                        last_updated_at=now,
                    )
                )
        return self.get_watermarks(job_id)

    def set_watermark(
        self, job_id: str, *, source_table: str, column: str, value: Watermark
    ) -> WatermarkRecord:
        """Set a job's one watermark by hand (a backfill may move it backward on purpose)."""
        return self.set_watermarks(job_id, [MarkUpdate(source_table, column, value)])[0]

    def reset_watermark(self, job_id: str) -> None:
        """Forget a job's watermark (and its checkpoint): the next run starts from the beginning."""
        self.get_job(job_id)
        with self._begin("cannot reset the watermark") as connection:
            self._refuse_if_live(connection, job_id)
            connection.execute(sa_delete(etl_watermarks).where(etl_watermarks.c.job_id == job_id))
            connection.execute(
                update(etl_jobs).where(etl_jobs.c.job_id == job_id).values(checkpoint_data=None)
            )

    def _refuse_if_live(self, connection: Connection, job_id: str) -> None:
        live = connection.execute(
            select(etl_job_runs.c.run_id).where(etl_job_runs.c.live_job_id == job_id)
        ).first()
        if live is not None:
            raise StoreError(
                f"job {job_id!r} has a live run ({live.run_id}); wait for it or cancel it first"
            )


# ---------------------------------------------------------------------------- helpers


def _first_due(definition: JobDefinition, now: datetime) -> datetime | None:
    if not definition.schedule:
        return None
    return next_fire(definition.schedule, definition.schedule_timezone, now)


def _greatest_mark(
    connection: Connection, job_id: str, source_tables: Sequence[str]
) -> Watermark | None:
    if not source_tables:
        return None
    w = etl_watermarks
    rows = connection.execute(
        select(w).where(w.c.job_id == job_id, w.c.source_table.in_(list(source_tables)))
    ).all()
    greatest: Watermark | None = None
    for row in rows:
        greatest = later_of(greatest, WatermarkRecord.from_row(row).watermark())
    return greatest


def _for_update(query: Any, connection: Connection) -> Any:
    return query if connection.dialect.name == "sqlite" else query.with_for_update()


def _same_token(run: RunRecord) -> Any:
    if run.owner_token is None:
        return etl_job_runs.c.owner_token.is_(None)
    return etl_job_runs.c.owner_token == run.owner_token


def _watermark_columns(prefix: str, value: Watermark | None) -> dict[str, Any]:
    if value is None:
        return {prefix: None, f"{prefix}_integer": None}
    return {prefix: value.ts, f"{prefix}_integer": value.id}


def _count_columns(counts: Counts) -> dict[str, int]:
    return {
        "rows_read": counts.rows_read,
        "rows_written": counts.rows_written,
        "rows_updated": counts.rows_updated,
        "rows_deleted": counts.rows_deleted,
    }


def _duration(started_at: datetime, finished_at: datetime) -> int:
    return max(0, round((finished_at - started_at) / timedelta(seconds=1)))


def _clip(message: str) -> str:
    return (
        message
        if len(message) <= MAX_ERROR_MESSAGE_LENGTH
        else message[:MAX_ERROR_MESSAGE_LENGTH] + "…"
    )
