"""Watermarks and their history: ``etl_watermarks`` and ``etl_watermark_history``.

A job keeps one mark per source table (an API job one per repository or project). Every change of
a mark — a run's commit, a value set by hand, a reset, a rollback — writes a history row with the
values before and after, in the same transaction as the change: the history is exactly what
happened to the marks, never more, never less. It is kept as long as the marks (never purged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy import delete as sa_delete

from highmark.errors import ConfigError, JobAlreadyRunningError, RunNotFoundError, StoreError
from highmark.models import (
    MarkUpdate,
    RunRecord,
    RunStatus,
    Watermark,
    WatermarkRecord,
    WatermarkType,
    _jsonable,
    later_of,
)
from highmark.store.base import StoreBase, for_update
from highmark.store.tables import etl_job_runs, etl_jobs, etl_watermark_history, etl_watermarks

# etl_watermark_history.change
RUN, SET, RESET, ROLLBACK = "run", "set", "reset", "rollback"


@dataclass(frozen=True)
class WatermarkChange:
    """A row of ``etl_watermark_history``: one mark, before and after one change."""

    history_id: int
    job_id: str
    source_table: str
    watermark_column: str | None
    watermark_type: str | None
    old_value_timestamp: datetime | None
    old_value_integer: int | None
    new_value_timestamp: datetime | None
    new_value_integer: int | None
    change: str
    run_id: int | None
    changed_by: str | None
    changed_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> WatermarkChange:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})

    def old_value(self) -> Watermark | None:
        return _value(self.watermark_type, self.old_value_timestamp, self.old_value_integer)

    def new_value(self) -> Watermark | None:
        return _value(self.watermark_type, self.new_value_timestamp, self.new_value_integer)

    def to_json(self) -> dict[str, Any]:
        return {f: _jsonable(getattr(self, f)) for f in self.__dataclass_fields__}


class Watermarks(StoreBase):
    """The marks of the control store (a part of :class:`~highmark.store.store.ControlStore`)."""

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

    def set_watermarks(
        self, job_id: str, marks: Sequence[MarkUpdate], *, changed_by: str | None = None
    ) -> list[WatermarkRecord]:
        """Replace a job's marks by hand (a backfill may move them backward on purpose)."""
        with self._begin("cannot set the watermark") as connection:
            self._require_job(connection, job_id)
            self._refuse_if_live(connection, job_id)
            now = self._now(connection)
            _replace(connection, job_id, marks, now, change=SET, run_id=None, by=changed_by)
        return self.get_watermarks(job_id)

    def set_watermark(
        self, job_id: str, *, source_table: str, column: str, value: Watermark
    ) -> WatermarkRecord:
        """Set a job's one watermark by hand (a backfill may move it backward on purpose)."""
        return self.set_watermarks(job_id, [MarkUpdate(source_table, column, value)])[0]

    def reset_watermark(self, job_id: str, *, changed_by: str | None = None) -> None:
        """Forget a job's watermark (and its checkpoint): the next run starts from the beginning."""
        with self._begin("cannot reset the watermark") as connection:
            self._require_job(connection, job_id)
            self._refuse_if_live(connection, job_id)
            now = self._now(connection)
            _replace(connection, job_id, [], now, change=RESET, run_id=None, by=changed_by)
            connection.execute(
                update(etl_jobs).where(etl_jobs.c.job_id == job_id).values(checkpoint_data=None)
            )

    def rollback_watermarks(
        self, job_id: str, run_id: int, *, changed_by: str | None = None
    ) -> list[WatermarkRecord]:
        """Put the job's marks back to what run ``run_id`` left (a mark that did not exist then
        is removed), and clear the checkpoint, in one transaction recorded in the history."""
        with self._begin("cannot roll the watermark back") as connection:
            self._require_job(connection, job_id)
            self._refuse_if_live(connection, job_id)
            run = connection.execute(
                select(etl_job_runs).where(etl_job_runs.c.run_id == run_id)
            ).first()
            if run is None or run.job_id != job_id:
                raise RunNotFoundError(f"job {job_id!r} has no run {run_id}")
            record = RunRecord.from_row(run)
            if record.run_status is not RunStatus.SUCCESS or record.backfill_window is not None:
                what = "a backfill" if record.backfill_window is not None else "not a success"
                raise ConfigError(
                    f"run {run_id} of {job_id} is {what}: it left no mark to go back to"
                )
            marks = _marks_after(connection, record)
            now = self._now(connection)
            _replace(connection, job_id, marks, now, change=ROLLBACK, run_id=run_id, by=changed_by)
            connection.execute(
                update(etl_jobs).where(etl_jobs.c.job_id == job_id).values(checkpoint_data=None)
            )
        return self.get_watermarks(job_id)

    def watermark_history(self, job_id: str, *, limit: int | None = 100) -> list[WatermarkChange]:
        """The job's mark changes, newest first."""
        h = etl_watermark_history
        query = select(h).where(h.c.job_id == job_id).order_by(h.c.history_id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._begin("cannot read etl_watermark_history") as connection:
            return [WatermarkChange.from_row(row) for row in connection.execute(query)]

    def _refuse_if_live(self, connection: Connection, job_id: str) -> None:
        live = connection.execute(
            select(etl_job_runs.c.run_id).where(etl_job_runs.c.live_job_id == job_id)
        ).first()
        if live is not None:
            raise JobAlreadyRunningError(
                f"job {job_id!r} has a live run ({live.run_id}); wait for it or cancel it first",
                run_id=live.run_id,
            )


# ---------------------------------------------------------------------------- in a transaction


def advance(
    connection: Connection, job_id: str, run_id: int, mark: MarkUpdate, now: datetime
) -> Watermark:
    """Move a mark forward to ``mark`` for run ``run_id`` (never backward), recording the move."""
    w = etl_watermarks
    where = (w.c.job_id == job_id, w.c.source_table == mark.source_table)
    current_row = connection.execute(for_update(select(w).where(*where), connection)).first()
    current_record = WatermarkRecord.from_row(current_row) if current_row else None
    current = current_record.watermark() if current_record else None
    candidate = mark.value
    if current is not None and current.type is candidate.type and current >= candidate:
        return current  # never backward; nothing newer was loaded
    values = _columns(mark, now, run_id)
    if current_row is None:
        connection.execute(
            insert(w).values(job_id=job_id, source_table=mark.source_table, **values)
        )
    else:
        connection.execute(update(w).where(*where).values(**values))
    _record(connection, job_id, mark.source_table, current_record, mark, now, RUN, run_id, None)
    return candidate


def greatest_mark(
    connection: Connection, job_id: str, source_tables: Sequence[str]
) -> Watermark | None:
    """The greatest of the job's marks on ``source_tables``."""
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


def _replace(
    connection: Connection,
    job_id: str,
    marks: Sequence[MarkUpdate],
    now: datetime,
    *,
    change: str,
    run_id: int | None,
    by: str | None,
) -> None:
    """Make ``marks`` the job's only marks, recording each one that changed."""
    w = etl_watermarks
    before = {
        row.source_table: WatermarkRecord.from_row(row)
        for row in connection.execute(for_update(select(w).where(w.c.job_id == job_id), connection))
    }
    connection.execute(sa_delete(w).where(w.c.job_id == job_id))
    wanted = {mark.source_table: mark for mark in marks}
    for table, mark in wanted.items():
        connection.execute(
            insert(w).values(job_id=job_id, source_table=table, **_columns(mark, now, run_id))
        )
    for table in sorted({*before, *wanted}):
        old, new = before.get(table), wanted.get(table)
        old_value = old.watermark() if old else None
        if old_value is not None and new is not None and old_value == new.value:
            continue
        if old_value is None and new is None:
            continue
        _record(connection, job_id, table, old, new, now, change, run_id, by)


def _record(
    connection: Connection,
    job_id: str,
    source_table: str,
    old: WatermarkRecord | None,
    new: MarkUpdate | None,
    now: datetime,
    change: str,
    run_id: int | None,
    by: str | None,
) -> None:
    old_value = old.watermark() if old else None
    kind = new.value.type.value if new else (old.watermark_type if old else None)
    connection.execute(
        insert(etl_watermark_history).values(
            job_id=job_id,
            source_table=source_table,
            watermark_column=new.column if new else (old.watermark_column if old else None),
            watermark_type=kind,
            old_value_timestamp=old_value.ts if old_value else None,
            old_value_integer=old_value.id if old_value else None,
            new_value_timestamp=new.value.ts if new else None,
            new_value_integer=new.value.id if new else None,
            change=change,
            run_id=run_id,
            changed_by=_who(change, run_id, by),
            changed_at=now,
        )
    )


def _who(change: str, run_id: int | None, by: str | None) -> str | None:
    if by:
        return by[:255]
    return f"run {run_id}" if change == RUN and run_id is not None else None


def _marks_after(connection: Connection, run: RunRecord) -> list[MarkUpdate]:
    """The job's marks as ``run`` left them. Per source table: its last change committed at or
    before the run's end (the run's own commit shares the run's ``finished_at``); else the value
    its first later change replaced; else (never changed since the history began) as it is.
    A job without any history (runs older than it) has its run row's ``watermark_end``."""
    h = etl_watermark_history
    end = run.finished_at
    assert end is not None
    changes = [
        WatermarkChange.from_row(row)
        for row in connection.execute(
            select(h).where(h.c.job_id == run.job_id).order_by(h.c.history_id)
        )
    ]
    if not changes:
        return _from_run_row(connection, run)
    w = etl_watermarks
    marks: dict[str, MarkUpdate | None] = {
        record.source_table: _update(record.source_table, record.watermark_column, value)
        for record in (
            WatermarkRecord.from_row(row)
            for row in connection.execute(select(w).where(w.c.job_id == run.job_id))
        )
        if (value := record.watermark()) is not None
    }
    decided: set[str] = set()
    for change in changes:  # oldest first
        table = change.source_table
        if change.changed_at <= end:
            marks[table] = _update(table, change.watermark_column, change.new_value())
            decided.add(table)
        elif table not in decided:
            marks[table] = _update(table, change.watermark_column, change.old_value())
            decided.add(table)
    return [mark for _, mark in sorted(marks.items()) if mark is not None]


def _update(table: str, column: str | None, value: Watermark | None) -> MarkUpdate | None:
    if value is None or column is None:
        return None
    return MarkUpdate(table, column, value)


def _from_run_row(connection: Connection, run: RunRecord) -> list[MarkUpdate]:
    """A run older than the history: its ``watermark_end`` is what it left, for a job with one
    mark (the current mark says on which table and column)."""
    w = etl_watermarks
    current = connection.execute(select(w).where(w.c.job_id == run.job_id)).all()
    if len(current) != 1:
        raise StoreError(
            f"run {run.run_id} predates the watermark history and job {run.job_id} keeps "
            f"{len(current)} marks: there is no record of what it left"
        )
    record = WatermarkRecord.from_row(current[0])
    value = _value(record.watermark_type, run.watermark_end, run.watermark_end_integer)
    if value is None:
        return []
    return [MarkUpdate(record.source_table, record.watermark_column, value)]


def _columns(mark: MarkUpdate, now: datetime, run_id: int | None) -> dict[str, Any]:
    return {
        "watermark_column": mark.column,
        "watermark_type": mark.value.type.value,
        "last_value_timestamp": mark.value.ts,
        "last_value_integer": mark.value.id,
        "last_successful_run_id": run_id,
        "last_updated_at": now,
    }


def _value(kind: str | None, ts: datetime | None, integer: int | None) -> Watermark | None:
    if kind == WatermarkType.INTEGER.value:
        return None if integer is None else Watermark(WatermarkType.INTEGER, id=integer)
    if kind == WatermarkType.TIMESTAMP.value and ts is not None:
        return Watermark(WatermarkType.TIMESTAMP, ts=ts, id=integer)
    return None
