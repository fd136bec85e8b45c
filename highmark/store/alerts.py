"""Alert bookkeeping on the control store: failure streaks, freshness, and ``etl_alerts``.

All the SQL of alerting lives here (STYLE: all control-table SQL lives in the store). An alert row
is unique per (sink, dedup_key), so however many processes decide to raise the same alert, one row
exists, and only the process whose insert created it delivers it right away. Every later delivery
attempt is a compare-and-set on the row's ``attempts``: two processes never send one alert twice at
the same time. Times come from the control database's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from highmark.models import RunStatus, _jsonable
from highmark.redact import scrub
from highmark.store.store import ControlStore
from highmark.store.tables import (
    etl_alerts,
    etl_job_runs,
    etl_jobs,
    etl_watermarks,
)

MAX_ERROR_LENGTH = 1000


class AlertStatus:
    PENDING = "pending"  # raised; its first delivery is under way (or its raiser died)
    SENT = "sent"
    FAILED = "failed"  # not delivered (yet): retried at next_attempt_at, none when given up

    ALL = (PENDING, SENT, FAILED)


@dataclass(frozen=True)
class AlertRecord:
    """A row of ``etl_alerts``: one alert for one sink, and how its delivery went."""

    alert_id: int
    job_id: str
    event: str
    dedup_key: str
    sink: str
    run_id: int | None
    message: str
    payload: dict[str, Any] | None
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> AlertRecord:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        return {f: _jsonable(getattr(self, f)) for f in self.__dataclass_fields__}


@dataclass(frozen=True)
class NewAlert:
    """An alert to raise for one sink (its message and payload already scrubbed)."""

    job_id: str
    event: str
    dedup_key: str
    sink: str
    run_id: int | None
    message: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Streak:
    """The failed runs of a job after its last success (cancelled runs do not count)."""

    failures: int
    first_run_id: int | None
    last_run_id: int | None
    last_success_run_id: int | None


@dataclass(frozen=True)
class Freshness:
    """What tells how fresh a job is: its last success, else its watermark, else its birth."""

    job_id: str
    is_active: bool
    created_at: datetime | None
    last_success_run_id: int | None
    last_success_at: datetime | None
    watermark_updated_at: datetime | None
    watermark_run_id: int | None


class AlertStore:
    """Alerting operations on the control store."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store
        self.dialect = store.engine.dialect.name

    # ------------------------------------------------------------------ what happened to jobs

    def failure_streak(self, job_id: str, *, upto_run_id: int) -> Streak:
        """The failure streak of ``job_id`` that includes (or ends just before) ``upto_run_id``:
        the failed runs after the last success at or before it."""
        runs = etl_job_runs.c
        with self.store._begin("cannot read etl_job_runs") as connection:
            last_success = connection.execute(
                select(func.max(runs.run_id)).where(
                    runs.job_id == job_id,
                    runs.run_status == RunStatus.SUCCESS.value,
                    runs.run_id <= upto_run_id,
                    runs.backfill_window.is_(None),  # a backfill does not end a streak
                )
            ).scalar()
            row = connection.execute(
                select(func.count(), func.min(runs.run_id), func.max(runs.run_id)).where(
                    runs.job_id == job_id,
                    runs.run_status == RunStatus.FAILED.value,
                    runs.run_id > (last_success or 0),
                    runs.run_id <= upto_run_id,
                    runs.backfill_window.is_(None),
                )
            ).one()
        return Streak(
            failures=int(row[0] or 0),
            first_run_id=None if row[1] is None else int(row[1]),
            last_run_id=None if row[2] is None else int(row[2]),
            last_success_run_id=None if last_success is None else int(last_success),
        )

    def freshness(self, job_ids: Sequence[str]) -> tuple[datetime, list[Freshness]]:
        """The control database's clock, and how fresh each of ``job_ids`` is."""
        if not job_ids:
            return self.store.now(), []
        runs = etl_job_runs.c
        with self.store._begin("cannot read the jobs' last successes") as connection:
            now = self.store._now(connection)
            jobs = {
                row.job_id: row
                for row in connection.execute(
                    select(etl_jobs.c.job_id, etl_jobs.c.is_active, etl_jobs.c.created_at).where(
                        etl_jobs.c.job_id.in_(job_ids)
                    )
                )
            }
            latest = (
                select(func.max(runs.run_id))
                .where(
                    runs.job_id.in_(job_ids),
                    runs.run_status == RunStatus.SUCCESS.value,
                    runs.backfill_window.is_(None),  # a backfill does not make a job fresh
                )
                .group_by(runs.job_id)
            )
            successes = {
                row.job_id: row
                for row in connection.execute(
                    select(runs.job_id, runs.run_id, runs.started_at, runs.finished_at).where(
                        runs.run_id.in_(latest.scalar_subquery())
                    )
                )
            }
            marks = {
                row.job_id: row
                for row in connection.execute(
                    select(
                        etl_watermarks.c.job_id,
                        etl_watermarks.c.last_updated_at,
                        etl_watermarks.c.last_successful_run_id,
                    ).where(etl_watermarks.c.job_id.in_(job_ids))
                )
            }
        out: list[Freshness] = []
        for job_id in job_ids:
            job = jobs.get(job_id)
            if job is None:
                continue
            success, mark = successes.get(job_id), marks.get(job_id)
            out.append(
                Freshness(
                    job_id=job_id,
                    is_active=bool(job.is_active),
                    created_at=job.created_at,
                    last_success_run_id=success.run_id if success else None,
                    last_success_at=(success.finished_at or success.started_at)
                    if success
                    else None,
                    watermark_updated_at=mark.last_updated_at if mark else None,
                    watermark_run_id=mark.last_successful_run_id if mark else None,
                )
            )
        return now, out

    # ------------------------------------------------------------------ alerts

    def raise_alert(self, alert: NewAlert, *, hold: timedelta) -> AlertRecord | None:
        """Insert the alert unless its (sink, dedup_key) exists: the new row (``pending``, held
        by this process for ``hold``), or None when some process raised it before."""
        with self.store._begin("cannot record the alert") as connection:
            now = self.store._now(connection)
            values = {
                "job_id": alert.job_id,
                "event": alert.event,
                "dedup_key": alert.dedup_key,
                "sink": alert.sink,
                "run_id": alert.run_id,
                "message": alert.message,
                "payload": alert.payload,
                "status": AlertStatus.PENDING,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now + hold,
            }
            if not self._insert_ignore(connection, etl_alerts, values):
                return None
            row = connection.execute(
                select(etl_alerts).where(
                    etl_alerts.c.sink == alert.sink, etl_alerts.c.dedup_key == alert.dedup_key
                )
            ).one()
        return AlertRecord.from_row(row)

    def claim(
        self, alert_id: int, attempts: int, *, hold: timedelta, due_only: bool
    ) -> AlertRecord | None:
        """Take the alert for one more delivery attempt if it is still as seen (``attempts``),
        unsent, and (``due_only``) due; hold it for ``hold``. None when someone else has it."""
        with self.store._begin("cannot claim the alert") as connection:
            now = self.store._now(connection)
            conditions = [
                etl_alerts.c.alert_id == alert_id,
                etl_alerts.c.attempts == attempts,
                etl_alerts.c.status != AlertStatus.SENT,
            ]
            if due_only:
                conditions.append(etl_alerts.c.next_attempt_at <= now)
            result = connection.execute(
                update(etl_alerts)
                .where(*conditions)
                .values(attempts=etl_alerts.c.attempts + 1, next_attempt_at=now + hold)
            )
            if result.rowcount != 1:
                return None
            row = connection.execute(
                select(etl_alerts).where(etl_alerts.c.alert_id == alert_id)
            ).one()
        return AlertRecord.from_row(row)

    def record_attempt(
        self, alert: AlertRecord, *, error: str | None, retry_in: timedelta | None
    ) -> AlertRecord:
        """Record how the attempt on a claimed alert went: ``sent``, or ``failed`` with its
        (scrubbed) error and when to try again (never, when ``retry_in`` is None)."""
        with self.store._begin("cannot record the alert's delivery") as connection:
            now = self.store._now(connection)
            values: dict[str, Any]
            if error is None:
                values = {"status": AlertStatus.SENT, "sent_at": now, "next_attempt_at": None}
            else:
                values = {
                    "status": AlertStatus.FAILED,
                    "last_error": _clip(scrub(error)),
                    "next_attempt_at": None if retry_in is None else now + retry_in,
                }
            connection.execute(
                update(etl_alerts)
                .where(
                    etl_alerts.c.alert_id == alert.alert_id,
                    etl_alerts.c.attempts == alert.attempts,
                    etl_alerts.c.status != AlertStatus.SENT,
                )
                .values(**values)
            )
            row = connection.execute(
                select(etl_alerts).where(etl_alerts.c.alert_id == alert.alert_id)
            ).one()
        return AlertRecord.from_row(row)

    def due(self, *, sinks: Sequence[str], max_attempts: int, limit: int) -> list[AlertRecord]:
        """Unsent alerts for ``sinks`` whose next attempt is due and that have attempts left,
        oldest first (alerts of sinks gone from the project file stay as they are)."""
        if not sinks:
            return []
        with self.store._begin("cannot read etl_alerts") as connection:
            now = self.store._now(connection)
            rows = connection.execute(
                select(etl_alerts)
                .where(
                    etl_alerts.c.sink.in_(list(sinks)),
                    etl_alerts.c.status.in_([AlertStatus.PENDING, AlertStatus.FAILED]),
                    etl_alerts.c.next_attempt_at <= now,
                    etl_alerts.c.attempts < max_attempts,
                )
                .order_by(etl_alerts.c.next_attempt_at, etl_alerts.c.alert_id)
                .limit(limit)
            ).all()
        return [AlertRecord.from_row(row) for row in rows]

    def recent(
        self, *, limit: int | None = 50, job_id: str | None = None, status: str | None = None
    ) -> list[AlertRecord]:
        """Alerts, newest first."""
        query = select(etl_alerts).order_by(
            etl_alerts.c.created_at.desc(), etl_alerts.c.alert_id.desc()
        )
        if job_id is not None:
            query = query.where(etl_alerts.c.job_id == job_id)
        if status is not None:
            query = query.where(etl_alerts.c.status == status)
        if limit is not None:
            query = query.limit(limit)
        with self.store._begin("cannot read etl_alerts") as connection:
            return [AlertRecord.from_row(row) for row in connection.execute(query)]

    # ------------------------------------------------------------------ periodic checks

    # ------------------------------------------------------------------ helpers

    def _insert_ignore(self, connection: Connection, table: Any, values: dict[str, Any]) -> bool:
        """Insert a row unless its unique key exists; True when this call created it."""
        statement: Any
        # Dialect packages are imported where used: sqlalchemy.dialects.mysql alone costs ~90 ms
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            # With RETURNING (which SQLAlchemy adds for a serial key anyway) rowcount is not
            # reliable on psycopg: ask for the key, and see whether a row came back.
            statement = (
                postgresql.insert(table)
                .on_conflict_do_nothing()
                .values(**values)
                .returning(*table.primary_key.columns)
            )
            return connection.execute(statement).first() is not None
        if self.dialect == "mysql":
            from sqlalchemy.dialects import mysql

            statement = mysql.insert(table).prefix_with("IGNORE")
        elif self.dialect == "sqlite":
            from sqlalchemy.dialects import sqlite

            statement = sqlite.insert(table).on_conflict_do_nothing()
        else:  # pragma: no cover - every supported database is above
            statement = insert(table)
        return bool(connection.execute(statement.values(**values)).rowcount == 1)


def _clip(message: str) -> str:
    return message if len(message) <= MAX_ERROR_LENGTH else message[:MAX_ERROR_LENGTH] + "…"
