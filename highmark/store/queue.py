"""The work queue of scheduled runs: cron slots in ``etl_job_slots``.

Any number of workers on any number of machines share it through the control database:

* **enqueue**: a worker that finds a job whose ``next_due_at`` has passed locks that job's row
  (``FOR UPDATE SKIP LOCKED``), inserts the due slot (its primary key makes a slot exist once,
  however many workers see it), marks older pending slots of the job superseded and moves
  ``next_due_at`` past now — all in one short transaction;
* **claim**: a worker locks ready slots (``SKIP LOCKED``: workers never wait for each other) and
  takes each with a compare-and-set, a lease and the next attempt number;
* **finish**: the claimant records the outcome — done, failed, cancelled, or back to
  ``retry_wait`` until its backoff has passed. A worker that dies stops renewing its leases; its
  slots become claimable again once they expire.

SQLite has no row locks: there, one worker at a time (the worker makes sure of that).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from highmark.clock import ensure_utc
from highmark.models import RunRecord, RunStatus
from highmark.scheduler import due_slot, next_fire
from highmark.store.store import ControlStore
from highmark.store.tables import etl_job_runs, etl_job_slots, etl_jobs

# Due jobs are enqueued this many per transaction: their rows stay locked only briefly, so runs
# writing checkpoints to the same rows hardly wait (a larger batch made a fleet ~3x slower).
ENQUEUE_BATCH = 25
ENQUEUE_MAX_BATCHES = 40


class SlotStatus:
    PENDING = "pending"
    CLAIMED = "claimed"
    RETRY_WAIT = "retry_wait"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Claim:
    """A slot this worker holds: run ``job_id`` for ``scheduled_for``, attempt ``attempt``."""

    job_id: str
    scheduled_for: datetime
    attempt: int
    missed: int
    retry_count: int


@dataclass(frozen=True)
class Enqueued:
    job_id: str
    scheduled_for: datetime
    missed: int
    late_by: timedelta


class WorkQueue:
    """Scheduling operations on the control store (all their SQL lives here)."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store
        self.dialect = store.engine.dialect.name

    def _lock(self, query: Any) -> Any:
        if self.dialect == "sqlite":
            return query  # one worker at a time on SQLite
        return query.with_for_update(skip_locked=True)

    def _insert_ignore(self, connection: Connection, values: dict[str, Any]) -> bool:
        """Insert a slot unless it exists; True when this call created it."""
        statement: Any
        # Dialect packages are imported where used: sqlalchemy.dialects.mysql alone costs ~90 ms
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            statement = postgresql.insert(etl_job_slots).on_conflict_do_nothing()
        elif self.dialect == "mysql":
            from sqlalchemy.dialects import mysql

            statement = mysql.insert(etl_job_slots).prefix_with("IGNORE")
        else:
            from sqlalchemy.dialects import sqlite

            statement = sqlite.insert(etl_job_slots).on_conflict_do_nothing()
        # psycopg forgets an INSERT's rowcount once SQLAlchemy closes the cursor: keep it.
        statement = statement.values(**values).execution_options(preserve_rowcount=True)
        return bool(connection.execute(statement).rowcount == 1)

    # ------------------------------------------------------------------ enqueue

    def enqueue_due(self, limit: int = ENQUEUE_BATCH) -> list[Enqueued]:
        """Turn every job whose fire time has passed into one due slot (catch-up: once), a few
        jobs per short transaction."""
        out: list[Enqueued] = []
        for _ in range(ENQUEUE_MAX_BATCHES):
            processed, created = self._enqueue_batch(limit)
            out.extend(created)
            if processed < limit:
                break
        return out

    def _enqueue_batch(self, limit: int) -> tuple[int, list[Enqueued]]:
        """One transaction: (due jobs it processed, slots it created)."""
        out: list[Enqueued] = []
        with self.store._begin("cannot enqueue due jobs") as connection:
            now = self.store._now(connection)
            due = connection.execute(
                self._lock(
                    select(
                        etl_jobs.c.job_id,
                        etl_jobs.c.schedule,
                        etl_jobs.c.schedule_timezone,
                        etl_jobs.c.next_due_at,
                    )
                    .where(
                        etl_jobs.c.is_active.is_(True),
                        etl_jobs.c.schedule.is_not(None),
                        etl_jobs.c.next_due_at <= now,
                    )
                    .order_by(etl_jobs.c.next_due_at)
                    .limit(limit)
                )
            ).all()
            for job in due:
                slot = due_slot(job.schedule, job.schedule_timezone, job.next_due_at, now)
                assert slot is not None
                # A job whose pending slot was never started keeps its place in the line: the
                # slot that stands in for it waits since the oldest one (no job starves while
                # the workers cannot keep up).
                waiting = connection.execute(
                    select(func.min(etl_job_slots.c.not_before)).where(
                        etl_job_slots.c.job_id == job.job_id,
                        etl_job_slots.c.status == SlotStatus.PENDING,
                        etl_job_slots.c.scheduled_for < slot.scheduled_for,
                    )
                ).scalar()
                since = slot.scheduled_for if waiting is None else min(waiting, slot.scheduled_for)
                created = self._insert_ignore(
                    connection,
                    {
                        "job_id": job.job_id,
                        "scheduled_for": slot.scheduled_for,
                        "status": SlotStatus.PENDING,
                        "attempt": 0,
                        "missed": slot.missed,
                        "not_before": since,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
                # catchup: false — a newer slot stands in for pending older ones.
                connection.execute(
                    update(etl_job_slots)
                    .where(
                        etl_job_slots.c.job_id == job.job_id,
                        etl_job_slots.c.status == SlotStatus.PENDING,
                        etl_job_slots.c.scheduled_for < slot.scheduled_for,
                    )
                    .values(status=SlotStatus.SKIPPED, updated_at=now)
                )
                connection.execute(
                    update(etl_jobs)
                    .where(etl_jobs.c.job_id == job.job_id)
                    .values(next_due_at=next_fire(job.schedule, job.schedule_timezone, now))
                )
                if created:
                    out.append(
                        Enqueued(
                            job.job_id, slot.scheduled_for, slot.missed, now - slot.scheduled_for
                        )
                    )
        return len(due), out

    # ------------------------------------------------------------------ claim

    def claim(self, worker_id: str, n: int, lease: timedelta) -> list[Claim]:
        """Take up to ``n`` ready slots (at most one per job, none of a job that is running)."""
        if n <= 0:
            return []
        claims: list[Claim] = []
        with self.store._begin("cannot claim work") as connection:
            now = self.store._now(connection)
            s = etl_job_slots
            ready = connection.execute(
                self._lock(
                    select(s.c.job_id, s.c.scheduled_for, s.c.status, s.c.attempt, s.c.missed)
                    .where(
                        or_(
                            and_(
                                s.c.status.in_([SlotStatus.PENDING, SlotStatus.RETRY_WAIT]),
                                s.c.not_before <= now,
                            ),
                            and_(s.c.status == SlotStatus.CLAIMED, s.c.lease_expires_at < now),
                        )
                    )
                    .order_by(s.c.not_before)
                    .limit(n * 4)
                )
            ).all()
            if not ready:
                return []
            job_ids = sorted({r.job_id for r in ready})
            jobs = {
                row.job_id: row
                for row in connection.execute(
                    select(etl_jobs.c.job_id, etl_jobs.c.is_active, etl_jobs.c.retry_count).where(
                        etl_jobs.c.job_id.in_(job_ids)
                    )
                )
            }
            running = set(
                connection.execute(
                    select(etl_job_runs.c.live_job_id).where(
                        etl_job_runs.c.live_job_id.in_(job_ids)
                    )
                ).scalars()
            )
            # A job with a slot claimed by a live worker is busy too, even before (or after) its
            # run's row is live: two claims of one job would only make one of them fail to start.
            running.update(
                connection.execute(
                    select(s.c.job_id).where(
                        s.c.job_id.in_(job_ids),
                        s.c.status == SlotStatus.CLAIMED,
                        s.c.lease_expires_at >= now,
                    )
                ).scalars()
            )
            ended = self._ended_runs(
                connection, [r for r in ready if r.status == SlotStatus.CLAIMED]
            )
            taken: set[str] = set()
            for slot in ready:
                job = jobs.get(slot.job_id)
                if job is None or not job.is_active:
                    self._set(connection, slot, now, status=SlotStatus.SKIPPED)
                    continue
                run = ended.get((slot.job_id, ensure_utc(slot.scheduled_for)))
                outcome = _outcome(run) if run is not None else None
                if run is not None and outcome is not None:
                    # Its claimant's lease lapsed after the run ended (the worker stalled or died
                    # before recording it): record the outcome; never run the slot again.
                    self._set(connection, slot, now, status=outcome, last_run_id=run.run_id)
                    continue
                if slot.job_id in taken or slot.job_id in running or len(claims) >= n:
                    continue
                attempt = slot.attempt + 1
                if attempt > (job.retry_count or 0) + 1:  # its last claimant died on the last try
                    self._set(connection, slot, now, status=SlotStatus.FAILED)
                    continue
                if self._set(
                    connection,
                    slot,
                    now,
                    status=SlotStatus.CLAIMED,
                    attempt=attempt,
                    worker_id=worker_id,
                    lease_expires_at=now + lease,
                ):
                    taken.add(slot.job_id)
                    claims.append(
                        Claim(
                            slot.job_id,
                            slot.scheduled_for,
                            attempt,
                            slot.missed,
                            job.retry_count or 0,
                        )
                    )
        return claims

    def _ended_runs(
        self, connection: Connection, expired: list[Any]
    ) -> dict[tuple[str, datetime], Any]:
        """The finished runs of the attempts whose claims have lapsed, by (job, slot)."""
        if not expired:
            return {}
        r = etl_job_runs
        rows = connection.execute(
            select(r.c.run_id, r.c.job_id, r.c.scheduled_for, r.c.run_status, r.c.error_details)
            .where(r.c.run_status != RunStatus.RUNNING.value)
            .where(
                or_(
                    *(
                        and_(
                            r.c.job_id == slot.job_id,
                            r.c.scheduled_for == slot.scheduled_for,
                            r.c.attempt == slot.attempt,
                        )
                        for slot in expired
                    )
                )
            )
        ).all()
        return {(row.job_id, ensure_utc(row.scheduled_for)): row for row in rows}

    def _set(self, connection: Connection, slot: Any, now: datetime, **values: Any) -> bool:
        """Compare-and-set a slot from the state it was read in."""
        result = connection.execute(
            update(etl_job_slots)
            .where(
                etl_job_slots.c.job_id == slot.job_id,
                etl_job_slots.c.scheduled_for == slot.scheduled_for,
                etl_job_slots.c.status == slot.status,
                etl_job_slots.c.attempt == slot.attempt,
            )
            .values(updated_at=now, **values)
        )
        return bool(result.rowcount == 1)

    def renew(self, worker_id: str, claims: list[Claim], lease: timedelta) -> list[Claim]:
        """Extend the leases of this worker's claims; return the claims it has lost."""
        lost = []
        with self.store._begin("cannot renew leases") as connection:
            now = self.store._now(connection)
            for claim in claims:
                if not self._update_claim(
                    connection, worker_id, claim, lease_expires_at=now + lease
                ):
                    lost.append(claim)
        return lost

    def _update_claim(
        self, connection: Connection, owner: str, claim: Claim, **values: Any
    ) -> bool:
        """Update a slot only while ``owner`` still holds this claim on it."""
        result = connection.execute(
            update(etl_job_slots)
            .where(
                etl_job_slots.c.job_id == claim.job_id,
                etl_job_slots.c.scheduled_for == claim.scheduled_for,
                etl_job_slots.c.status == SlotStatus.CLAIMED,
                etl_job_slots.c.worker_id == owner,
                etl_job_slots.c.attempt == claim.attempt,
            )
            .values(**values)
        )
        return bool(result.rowcount == 1)

    # ------------------------------------------------------------------ finish

    def run_of(self, claim: Claim) -> RunRecord | None:
        """The run a claim started, if it got as far as starting one."""
        with self.store._begin("cannot read etl_job_runs") as connection:
            row = connection.execute(
                select(etl_job_runs).where(
                    etl_job_runs.c.job_id == claim.job_id,
                    etl_job_runs.c.scheduled_for == claim.scheduled_for,
                    etl_job_runs.c.attempt == claim.attempt,
                )
            ).first()
        return RunRecord.from_row(row) if row else None

    def finish(
        self,
        worker_id: str,
        claim: Claim,
        status: str,
        *,
        run_id: int | None,
        retry_after: timedelta | None = None,
    ) -> bool:
        """Record a claim's outcome; ``retry_wait`` with ``retry_after`` schedules the next try."""
        with self.store._begin("cannot finish the slot") as connection:
            now = self.store._now(connection)
            values: dict[str, Any] = {
                "status": status,
                "updated_at": now,
                "lease_expires_at": None,
                "last_run_id": run_id,
            }
            if retry_after is not None:
                values["not_before"] = now + retry_after
            return self._update_claim(connection, worker_id, claim, **values)

    def release(self, worker_id: str, claim: Claim) -> bool:
        """Give a claim back untried (the worker is stopping before it started the run)."""
        with self.store._begin("cannot release the slot") as connection:
            return self._update_claim(
                connection,
                worker_id,
                claim,
                status=SlotStatus.PENDING if claim.attempt == 1 else SlotStatus.RETRY_WAIT,
                attempt=claim.attempt - 1,
                lease_expires_at=None,
                worker_id=None,
            )

    def slots(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Slots, newest first (for reports and tests)."""
        query = select(etl_job_slots).order_by(etl_job_slots.c.scheduled_for.desc())
        if job_id is not None:
            query = query.where(etl_job_slots.c.job_id == job_id)
        with self.store._begin("cannot read etl_job_slots") as connection:
            return [dict(row._mapping) for row in connection.execute(query)]


def _outcome(run: Any) -> str | None:
    """The slot status a finished run settles, or None when the slot is to be tried again."""
    if run.run_status == RunStatus.SUCCESS.value:
        return SlotStatus.DONE
    if run.run_status == RunStatus.CANCELLED.value:
        return SlotStatus.CANCELLED
    if not (run.error_details or {}).get("retryable"):
        return SlotStatus.FAILED
    return None
