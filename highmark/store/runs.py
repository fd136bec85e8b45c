"""The run log: a run's row in ``etl_job_runs`` from its claim to its end, and reading runs back.

Every write that touches a live run is a compare-and-set on the run's state and its owner's
fencing token (``owner_token``): a process that lost its run (it was declared abandoned, or
cancelled) can never overwrite what happened to it. A job has at most one live regular run (the
unique ``live_job_id``) and at most one live backfill (the unique ``live_backfill_job_id``); a
backfill keeps its checkpoint in ``etl_jobs.backfill_checkpoint`` and never moves a mark.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from highmark import failpoints
from highmark.errors import (
    ClaimLostError,
    DuplicateRequestError,
    JobNotFoundError,
    LeaseLostError,
    RunNotFoundError,
    StoreError,
    one_line,
)
from highmark.models import (
    Counts,
    JobRecord,
    MarkUpdate,
    RunRecord,
    RunStatus,
    Watermark,
)
from highmark.redact import scrub, scrub_json
from highmark.store.base import StoreBase, for_update
from highmark.store.tables import etl_job_runs, etl_job_slots, etl_jobs
from highmark.store.watermarks import advance, greatest_mark

MAX_ERROR_MESSAGE_LENGTH = 2000


@dataclass(frozen=True)
class RunHandle:
    """What the owner of a live run holds: its id and its fencing token."""

    run_id: int
    job_id: str
    owner_token: str
    started_at: datetime
    backfill: bool = False


class RunLog(StoreBase):
    """The runs of the control store (a part of :class:`~highmark.store.store.ControlStore`)."""

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
                .values({checkpoint_column(handle.backfill): checkpoint})
            )
        return cancel

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
        backfill_window: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> RunHandle | None:
        """Insert the run's row as ``running``; None when the job already has a live run (a live
        backfill, for a backfill).

        The unique ``live_job_id`` makes the database itself refuse a second live run (the unique
        ``live_backfill_job_id`` a second live backfill); the unique (job, scheduled_for, attempt)
        refuses a second run of one attempt at a cron slot; the unique ``idempotency_key`` a
        second run for one API request (:class:`DuplicateRequestError`).
        """
        token = uuid.uuid4().hex
        backfill = backfill_window is not None
        extra = {
            "scheduled_for": scheduled_for,
            "attempt": attempt,
            "worker_id": worker_id,
            "backfill_window": backfill_window,
            "live_job_id": None if backfill else job_id,
            "live_backfill_job_id": job_id if backfill else None,
            "idempotency_key": idempotency_key,
        }
        with self._errors("cannot start a run"):
            try:
                return self._insert_run(
                    job_id, token, triggered_by, host, pid, watermark_start, extra
                )
            except IntegrityError as exc:
                # Every database names the violated unique key (its column, or an index named
                # after it) in the first line of its message (a foreign-key error's detail line
                # may quote the job id instead).
                first = one_line(str(exc.orig))
                if "idempotency_key" in first:
                    raise DuplicateRequestError(
                        f"the Idempotency-Key of this request already started a run of {job_id}"
                    ) from None
                if "live_job_id" in first or "live_backfill_job_id" in first:
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
        return RunHandle(
            run_id=run_id,
            job_id=job_id,
            owner_token=token,
            started_at=now,
            backfill=extra["backfill_window"] is not None,
        )

    def _check_claim(self, connection: Connection, job_id: str, slot: dict[str, Any]) -> None:
        """A scheduled run starts only while its worker holds its slot's claim. The slot's row
        is locked after the run's row is inserted (the insert's foreign key locks the job's row
        first, as enqueuing does: job, then its slots, so the two never deadlock) and until the
        run's row is committed: a worker taking over a lapsed claim either comes first (and
        this run rolls back, never started) or finds the run."""
        s = etl_job_slots
        row = connection.execute(
            for_update(
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

    def live_run(self, job_id: str, *, backfill: bool = False) -> RunRecord | None:
        """The job's live regular run (its live backfill, with ``backfill``), if any."""
        key = etl_job_runs.c.live_backfill_job_id if backfill else etl_job_runs.c.live_job_id
        with self._begin("cannot read etl_job_runs") as connection:
            row = connection.execute(select(etl_job_runs).where(key == job_id)).first()
        return RunRecord.from_row(row) if row else None

    def run_by_idempotency_key(self, key: str) -> RunRecord | None:
        """The run an API request with this ``Idempotency-Key`` started, if any."""
        with self._begin("cannot read etl_job_runs") as connection:
            row = connection.execute(
                select(etl_job_runs).where(etl_job_runs.c.idempotency_key == key)
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
        """Ask a live run (by run id, or a job's regular run by job id) to stop; it ends
        `cancelled` at its next batch."""
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
        watermark_end: Watermark | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> RunRecord:
        """End a run ``success`` and move its marks, in one transaction.

        Each mark moves only forward (each move is a row of the watermark history); the checkpoint
        becomes ``checkpoint`` (by default it is cleared: what a job keeps for its next run, such
        as a Graph delta link, is set here). ``watermark_end`` is the greatest of the job's marks
        on ``mark_tables`` after the move. A backfill moves no mark (its ``watermark_end`` is its
        window's end, given) and its own checkpoint is cleared.
        """
        if handle.backfill and marks:
            raise StoreError(f"run {handle.run_id} is a backfill: it commits no marks")
        with self._begin("cannot finish the run") as connection:
            now = self._now(connection)
            for mark in marks:
                advance(connection, handle.job_id, handle.run_id, mark, now)
            committed = (
                watermark_end
                if handle.backfill
                else greatest_mark(connection, handle.job_id, mark_tables)
            )
            self._cas_run(
                connection,
                handle,
                run_status=RunStatus.SUCCESS.value,
                finished_at=now,
                duration_seconds=_duration(handle.started_at, now),
                heartbeat_at=now,
                **NOT_LIVE,
                notes=[scrub(n) for n in notes] if notes else None,
                **_count_columns(counts),
                **_watermark_columns("watermark_end", committed),
            )
            connection.execute(
                update(etl_jobs)
                .where(etl_jobs.c.job_id == handle.job_id)
                .values(
                    {checkpoint_column(handle.backfill): None if handle.backfill else checkpoint}
                )
            )
            failpoints.reach("during_final_commit")
        return self.get_run(handle.run_id)

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
                **NOT_LIVE,
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
                    **NOT_LIVE,
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
            raise RunNotFoundError(f"no run {run_id}")
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


# What a run's row says once it is no longer live: its live keys are free again.
NOT_LIVE: dict[str, Any] = {"live_job_id": None, "live_backfill_job_id": None}


def checkpoint_column(backfill: bool) -> str:
    """Where a run keeps its checkpoint: a backfill's is apart from the regular runs' one."""
    return "backfill_checkpoint" if backfill else "checkpoint_data"


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
        "rows_rejected": counts.rows_rejected,
    }


def _duration(started_at: datetime, finished_at: datetime) -> int:
    return max(0, round((finished_at - started_at) / timedelta(seconds=1)))


def _clip(message: str) -> str:
    return (
        message
        if len(message) <= MAX_ERROR_MESSAGE_LENGTH
        else message[:MAX_ERROR_MESSAGE_LENGTH] + "…"
    )
