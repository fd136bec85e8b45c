"""Coarse, missing and future timestamps.

* A column of whole seconds (MariaDB ``DATETIME`` or SQLite's ``CURRENT_TIMESTAMP`` text) holds
  many rows per value. A run in second S must stop its window below S: a row written later in S
  — here with a lower id, so not even the tiebreaker could save it — would otherwise sit below
  the mark for ever.
* A NULL watermark value is an error by default, skipped or included on request, and said so.
* A row stamped in the future stays out of every window, is reported in the run's notes, and does
  not drag the watermark past now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import BigInteger, Column, MetaData, Numeric, String, Table, insert, text
from sqlalchemy.engine import Connection, Engine

from highmark import Project, RunRecord, RunStatus
from tests.faults.invariants import (
    JOB,
    SOURCE,
    TARGET,
    MarkLog,
    assert_target_equals_source,
    write_job,
)
from tests.helpers import BASE_TIME, Timestamp, snapshot

ATTEMPTS = 10

# ------------------------------------------------------------------ whole-second timestamps

DDL = {
    "mysql": """CREATE TABLE orders (
        id BIGINT PRIMARY KEY, customer VARCHAR(100) NOT NULL, amount DECIMAL(12, 2) NOT NULL,
        updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, deleted_at DATETIME NULL)""",
    "sqlite": """CREATE TABLE orders (
        id INTEGER PRIMARY KEY, customer TEXT NOT NULL, amount NUMERIC(12, 2) NOT NULL,
        updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, deleted_at DATETIME)""",
}
CLOCK = {
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "sqlite": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
}


class _Seconds:
    """A source whose updated_at is stamped by the database, in whole seconds."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        with self._connect() as conn:
            conn.execute(text(DDL[self.dialect]))

    def _connect(self) -> Any:
        conn: Connection = self.engine.connect()
        if self.dialect == "mysql":
            conn.execute(text("SET time_zone = '+00:00'"))  # as highmark reads it: UTC
        return conn

    def now(self) -> datetime:
        with self._connect() as conn:
            value = conn.execute(text(CLOCK[self.dialect])).scalar_one()
        return _utc(value)

    def insert(self, i: int, at: str | None = None) -> datetime:
        """Insert row ``i`` stamped ``at``, or by the database clock; return its stamp."""
        columns, values = "id, customer, amount", ":id, :customer, :amount"
        if at is not None:
            columns, values = columns + ", updated_at", values + ", :at"
        with self._connect() as conn:
            conn.execute(
                text(f"INSERT INTO orders ({columns}) VALUES ({values})"),
                {"id": i, "customer": f"customer {i}", "amount": f"{i}.25", "at": at},
            )
            stamp = conn.execute(
                text("SELECT updated_at FROM orders WHERE id = :id"), {"id": i}
            ).scalar_one()
            conn.commit()
        return _utc(stamp)

    def delete(self, *ids: int) -> None:
        with self._connect() as conn:
            for table in (SOURCE, TARGET):
                conn.execute(text(f"DELETE FROM {table} WHERE id IN ({', '.join(map(str, ids))})"))
            conn.commit()

    def start_of_a_second(self) -> datetime:
        """Wait (at most a second) until the database clock has just begun a new second."""
        now = self.now()
        if now.microsecond > 300_000:
            time.sleep((1_000_000 - now.microsecond) / 1_000_000)
            now = self.now()
        return now


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _second(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _bound(run: RunRecord) -> datetime:
    assert run.upper_bound is not None
    return _utc(run.upper_bound.replace("Z", "+00:00"))


@pytest.mark.parametrize("backend", ["mysql", "sqlite"])
def test_a_row_written_later_in_the_same_second_is_not_lost(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    source = _Seconds(engine_for(db_url))
    path = write_job(write_project, db_url)
    project = Project.load(path)
    marks = MarkLog(project)
    source.insert(1, at="2024-01-01 12:00:00")
    assert project.run(JOB).rows_written == 1
    marks.check()

    for _ in range(ATTEMPTS):
        source.start_of_a_second()
        first_stamp = source.insert(20)
        in_second = project.run(JOB)
        # Written after that run, in the same second, with a lower id.
        second_stamp = source.insert(10)
        marks.check()
        if first_stamp == second_stamp:
            break
        source.delete(10, 20)  # the clock ticked over in between: try again
    else:
        pytest.fail(f"rows 20 and 10 never shared a second in {ATTEMPTS} attempts")

    shared = first_stamp
    assert shared == _second(shared)  # whole seconds, as the column writes them
    assert in_second.run_status is RunStatus.SUCCESS, in_second.error_message
    assert _bound(in_second) < shared  # strictly below the second the run happened in
    assert in_second.rows_read == 0

    # Run until a window reaches the shared second: the first one that does holds both rows.
    deadline = time.monotonic() + 30
    while True:
        run = project.run(JOB)
        marks.check()
        assert run.run_status is RunStatus.SUCCESS, run.error_message
        assert _bound(run) < _second(source.now())
        if run.rows_read:
            break
        assert time.monotonic() < deadline, "no window ever reached the shared second"
        time.sleep(0.05)
    assert (run.rows_read, run.rows_written) == (2, 2)
    assert _bound(run) >= shared
    assert_target_equals_source(source.engine)
    assert sum(r.rows_written for r in project.runs(JOB)) == 3


# ------------------------------------------------------------------ NULL and future stamps


def _nullable_orders(engine: Engine) -> Table:
    table = Table(
        SOURCE,
        MetaData(),
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("customer", String(100), nullable=False),
        Column("amount", Numeric(12, 2), nullable=False),
        Column("updated_at", Timestamp, nullable=True),
        Column("deleted_at", Timestamp, nullable=True),
    )
    table.metadata.create_all(engine)
    return table


def _insert(engine: Engine, table: Table, i: int, at: datetime | None) -> None:
    if at is not None and engine.dialect.name != "postgresql":
        at = at.astimezone(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            insert(table).values(
                id=i, customer=f"customer {i}", amount=Decimal(f"{i}.25"), updated_at=at
            )
        )


def _setup(
    db_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    **watermark: Any,
) -> tuple[Engine, Table, Project, MarkLog]:
    engine = engine_for(db_url)
    table = _nullable_orders(engine)
    spec = {"column": "updated_at", "type": "timestamp", "tiebreaker": "id", **watermark}
    path = write_job(write_project, db_url, watermark=spec)
    project = Project.load(path)
    return engine, table, project, MarkLog(project)


def _ids(engine: Engine, name: str) -> list[int]:
    return [r["id"] for r in snapshot(engine, name)]


def test_a_null_watermark_fails_the_run_by_default(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine, table, project, marks = _setup(db_url, engine_for, write_project)
    for i in (1, 2):
        _insert(engine, table, i, BASE_TIME + timedelta(seconds=i))
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    before = marks.check()
    _insert(engine, table, 3, None)
    _insert(engine, table, 4, BASE_TIME + timedelta(seconds=4))

    run = project.run(JOB)

    assert run.run_status is RunStatus.FAILED
    assert run.error_message is not None
    assert "1 row(s) of orders have a NULL updated_at" in run.error_message
    assert "watermark.on_null: skip or include" in run.error_message
    assert run.error_details is not None and run.error_details["retryable"] is False
    assert marks.check() == before
    assert _ids(engine, TARGET) == [1, 2]  # nothing of the failed run was written


@pytest.mark.parametrize("on_null", ["skip", "include"])
def test_a_null_watermark_is_skipped_or_included_on_request(
    on_null: str,
    db_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    engine, table, project, marks = _setup(db_url, engine_for, write_project, on_null=on_null)
    for i in (1, 2, 4):
        _insert(engine, table, i, BASE_TIME + timedelta(seconds=i))
    _insert(engine, table, 3, None)

    first = project.run(JOB)
    marks.check()
    second = project.run(JOB)
    marks.check()

    for run in (first, second):
        assert run.run_status is RunStatus.SUCCESS, run.error_message
        verb = "skipped" if on_null == "skip" else "included in every run"
        assert run.notes == [f"1 row(s) with a NULL updated_at {verb}"]
    mark = project.watermark(JOB)
    assert mark is not None and mark.last_value_integer == 4
    if on_null == "skip":
        assert (first.rows_read, first.rows_written) == (3, 3)
        assert _ids(engine, TARGET) == [1, 2, 4]
        assert second.rows_read == 0
    else:
        assert (first.rows_read, first.rows_written) == (4, 4)
        assert_target_equals_source(engine)
        # Read again by every run, but unchanged: counted nowhere.
        assert (second.rows_read, second.rows_written, second.rows_updated) == (1, 0, 0)


def test_a_future_row_stays_out_and_is_reported(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine, table, project, marks = _setup(db_url, engine_for, write_project)
    future = datetime(2999, 1, 1, tzinfo=UTC)
    for i in (1, 2, 3):
        _insert(engine, table, i, BASE_TIME + timedelta(seconds=i))
    _insert(engine, table, 4, future)

    for _ in range(2):
        run = project.run(JOB)
        marks.check()
        now = project.store.now()  # control and source share the database, and its clock

        assert run.run_status is RunStatus.SUCCESS, run.error_message
        assert run.notes is not None and len(run.notes) == 1
        assert "1 row(s) have updated_at after the source clock" in run.notes[0]
        assert "2999-01-01" in run.notes[0]
        assert _ids(engine, TARGET) == [1, 2, 3]
        mark = project.watermark(JOB)
        assert mark is not None and mark.last_value_timestamp is not None
        assert mark.last_value_timestamp < now
        assert _bound(run) < now
