"""Retention SQL: roll old runs up into ``etl_run_summaries``, delete old rows in bounded batches,
and the compare-and-set that lets many workers run periodic maintenance once between them.

Each batch is one short transaction: it locks at most ``limit`` rows (``SKIP LOCKED``: two purges
never wait for each other nor take the same rows), adds the runs it deletes to their (job, day)
summary rows, and deletes them. A purge killed between batches therefore loses nothing and counts
nothing twice. Rows are found through the tables' indexes (``run_status, started_at``;
``created_at``; ``status, not_before``; ``occurred_at``), oldest first. Watermarks are never
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, func, select, tuple_

from highmark import failpoints
from highmark.models import RunStatus
from highmark.store.queue import SlotStatus
from highmark.store.store import ControlStore
from highmark.store.tables import (
    etl_alerts,
    etl_audit,
    etl_job_runs,
    etl_job_slots,
    etl_rejected_rows,
    etl_run_summaries,
)

# Statuses of rows that are history: a running run or a pending slot is never purged.
FINISHED_RUNS = tuple(s.value for s in RunStatus if s is not RunStatus.RUNNING)
FINISHED_SLOTS = (
    SlotStatus.DONE,
    SlotStatus.FAILED,
    SlotStatus.CANCELLED,
    SlotStatus.SKIPPED,
)
# Keys per DELETE statement: well below every database's limit on bound parameters.
DELETE_CHUNK = 400
_COUNTS = ("rows_read", "rows_written", "rows_updated", "rows_deleted", "rows_rejected")
_SUMS = ("runs", "successes", "failures", "cancelled", *_COUNTS, "duration_seconds_total")


@dataclass(frozen=True)
class Span:
    """Rows of one table that are (or would be) purged: how many, and the oldest and newest
    of their time column (``started_at``, ``created_at``, ``not_before`` or ``day``)."""

    rows: int = 0
    oldest: datetime | date | None = None
    newest: datetime | date | None = None

    def __add__(self, other: Span) -> Span:
        return Span(
            self.rows + other.rows,
            _pick(min, self.oldest, other.oldest),
            _pick(max, self.newest, other.newest),
        )


@dataclass(frozen=True)
class Batch:
    """One committed batch: the rows it deleted and the summary rows it added them to."""

    span: Span
    summaries: int = 0


class RetentionStore:
    """The retention operations on the control store (all their SQL lives here)."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store
        self.dialect = store.engine.dialect.name

    def now(self) -> datetime:
        return self.store.now()

    # ------------------------------------------------------------------ what would go

    def preview(
        self, runs_before: datetime, summaries_before: date, audit_before: datetime
    ) -> tuple[dict[str, Span], int]:
        """What a purge with these cutoffs would delete, per table; and how many running runs
        older than the cutoff it keeps."""
        r, a, s, m, u = etl_job_runs, etl_alerts, etl_job_slots, etl_run_summaries, etl_audit
        with self.store._begin("cannot read what the purge would delete") as connection:
            spans = {
                r.name: _span(
                    connection,
                    r.c.started_at,
                    r.c.run_status.in_(FINISHED_RUNS),
                    r.c.started_at < runs_before,
                ),
                a.name: _span(connection, a.c.created_at, a.c.created_at < runs_before),
                s.name: _span(
                    connection,
                    s.c.not_before,
                    s.c.status.in_(FINISHED_SLOTS),
                    s.c.not_before < runs_before,
                ),
                m.name: _span(connection, m.c.day, m.c.day < summaries_before),
                u.name: _span(connection, u.c.occurred_at, u.c.occurred_at < audit_before),
            }
            running = connection.execute(
                select(func.count()).where(
                    r.c.run_status == RunStatus.RUNNING.value, r.c.started_at < runs_before
                )
            ).scalar_one()
        return spans, int(running)

    # ------------------------------------------------------------------ batches

    def purge_runs(self, before: datetime, limit: int) -> Batch:
        """Roll up and delete up to ``limit`` finished runs started before ``before``."""
        r = etl_job_runs
        columns = (r.c.run_id, r.c.job_id, r.c.run_status, r.c.started_at,
                   r.c.duration_seconds, *(r.c[c] for c in _COUNTS))  # fmt: skip
        with self.store._begin("cannot purge etl_job_runs") as connection:
            rows: list[Any] = []
            for status in FINISHED_RUNS:  # one index range per status: (run_status, started_at)
                if len(rows) >= limit:
                    break
                rows += connection.execute(
                    self._lock(
                        select(*columns)
                        .where(r.c.run_status == status, r.c.started_at < before)
                        .order_by(r.c.started_at, r.c.run_id)
                        .limit(limit - len(rows))
                    )
                ).all()
            if not rows:
                return Batch(Span())
            summaries = _roll_up(rows)
            for (job_id, day), sums in sorted(summaries.items()):
                connection.execute(self._add_summary(job_id, day, sums))
            self._delete(connection, r, [r.c.run_id], [(row.run_id,) for row in rows])
            # The bad rows a run quarantined are its detail: they go with it.
            quarantine = etl_rejected_rows
            self._delete(
                connection, quarantine, [quarantine.c.run_id], [(row.run_id,) for row in rows]
            )
            failpoints.reach("in_purge_batch")
        stamps = [row.started_at for row in rows]
        return Batch(Span(len(rows), min(stamps), max(stamps)), len(summaries))

    def purge_alerts(self, before: datetime, limit: int) -> Batch:
        """Delete up to ``limit`` alerts created before ``before``."""
        a = etl_alerts
        return self._purge(a, [a.c.alert_id], a.c.created_at, [a.c.created_at < before], limit)

    def purge_slots(self, before: datetime, limit: int) -> Batch:
        """Delete up to ``limit`` finished cron slots whose last try was due before ``before``."""
        s = etl_job_slots
        return self._purge(
            s,
            [s.c.job_id, s.c.scheduled_for],
            s.c.not_before,
            [s.c.status.in_(FINISHED_SLOTS), s.c.not_before < before],
            limit,
        )

    def purge_summaries(self, before: date, limit: int) -> Batch:
        """Delete up to ``limit`` run summaries of days before ``before``."""
        m = etl_run_summaries
        return self._purge(m, [m.c.job_id, m.c.day], m.c.day, [m.c.day < before], limit)

    def purge_audit(self, before: datetime, limit: int) -> Batch:
        """Delete up to ``limit`` audit entries (REST API calls, logins) from before ``before``."""
        u = etl_audit
        return self._purge(u, [u.c.audit_id], u.c.occurred_at, [u.c.occurred_at < before], limit)

    def _purge(
        self, table: Table, key: list[Any], stamp: Any, where: list[Any], limit: int
    ) -> Batch:
        with self.store._begin(f"cannot purge {table.name}") as connection:
            rows = connection.execute(
                self._lock(select(*key, stamp).where(*where).order_by(stamp, *key).limit(limit))
            ).all()
            if not rows:
                return Batch(Span())
            self._delete(connection, table, key, [tuple(row)[: len(key)] for row in rows])
            failpoints.reach("in_purge_batch")
        stamps = [row[len(key)] for row in rows]
        return Batch(Span(len(rows), min(stamps), max(stamps)))

    def _delete(
        self, connection: Connection, table: Table, key: list[Any], values: list[tuple[Any, ...]]
    ) -> None:
        for chunk in _chunks(values, DELETE_CHUNK):
            if len(key) == 1:
                condition = key[0].in_([v[0] for v in chunk])
            else:
                condition = tuple_(*key).in_(chunk)
            connection.execute(delete(table).where(condition))

    def _lock(self, query: Any) -> Any:
        if self.dialect == "sqlite":
            return query  # BEGIN IMMEDIATE: one writer at a time
        return query.with_for_update(skip_locked=True)

    def _add_summary(self, job_id: str, day: date, sums: dict[str, int]) -> Any:
        """An upsert that adds to the (job, day) row when part of the day was rolled up before."""
        m = etl_run_summaries
        values = {"job_id": job_id, "day": day, **sums}
        statement: Any
        if self.dialect == "mysql":
            from sqlalchemy.dialects import mysql  # imported where used: ~90 ms

            statement = mysql.insert(m).values(**values)
            new: Any = statement.inserted
            return statement.on_duplicate_key_update(
                **{c: m.c[c] + new[c] for c in _SUMS},
                duration_seconds_max=func.greatest(
                    m.c.duration_seconds_max, new.duration_seconds_max
                ),
            )
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql as dialect
        else:
            from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
        statement = dialect.insert(m).values(**values)
        new = statement.excluded
        larger = func.greatest if self.dialect == "postgresql" else func.max  # max(a, b): scalar
        return statement.on_conflict_do_update(
            index_elements=[m.c.job_id, m.c.day],
            set_={
                **{c: m.c[c] + new[c] for c in _SUMS},
                "duration_seconds_max": larger(m.c.duration_seconds_max, new.duration_seconds_max),
            },
        )

    # ------------------------------------------------------------------ maintenance


def _roll_up(rows: Sequence[Any]) -> dict[tuple[str, date], dict[str, int]]:
    """Per job and day (UTC) of ``started_at``: what the runs did."""
    out: dict[tuple[str, date], dict[str, int]] = {}
    for row in rows:
        sums = out.setdefault(
            (row.job_id, row.started_at.date()),
            dict.fromkeys((*_SUMS, "duration_seconds_max"), 0),
        )
        sums["runs"] += 1
        sums["successes"] += row.run_status == RunStatus.SUCCESS.value
        sums["failures"] += row.run_status == RunStatus.FAILED.value
        sums["cancelled"] += row.run_status == RunStatus.CANCELLED.value
        for column in _COUNTS:
            sums[column] += getattr(row, column) or 0
        duration = row.duration_seconds or 0
        sums["duration_seconds_total"] += duration
        sums["duration_seconds_max"] = max(sums["duration_seconds_max"], duration)
    return out


def _span(connection: Connection, column: Any, *where: Any) -> Span:
    row = connection.execute(
        select(func.count(), func.min(column), func.max(column)).where(*where)
    ).one()
    return Span(int(row[0]), row[1], row[2])


def _pick(choose: Any, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return choose(a, b)


def _chunks(values: list[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
