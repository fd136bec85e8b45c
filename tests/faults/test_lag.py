"""Timestamps written by an application clock that runs behind the database's.

A row stamped ten seconds in the past can commit after a run already moved the mark beyond its
stamp. Without ``watermark.lag`` it is lost for good; with ``lag: 30s`` every run re-reads thirty
seconds behind the mark, so it arrives on the next run. Re-read rows that did not change are not
counted, and the mark never moves backward.

Every timestamp is placed relative to the source database's clock, read when the test starts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table
from sqlalchemy.engine import Engine

from highmark import CancelToken, Counts, JobSpec, Project, RunRecord, RunStatus
from tests.faults.invariants import (
    JOB,
    SOURCE,
    TARGET,
    MarkLog,
    assert_target_equals_source,
    write_job,
)
from tests.helpers import create_orders, insert_orders, order, snapshot, update_order


def _seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


class _Setup:
    def __init__(
        self,
        db_url: str,
        engine_for: Callable[[str], Engine],
        write_project: Callable[..., Path],
        **job: Any,
    ) -> None:
        self.engine = engine_for(db_url)
        self.table: Table = create_orders(self.engine)
        self.path = write_job(write_project, db_url, **job)
        self.project = Project.load(self.path)
        self.marks = MarkLog(self.project)
        self.start = self.now()  # the source's clock (control and source share the database)

    def now(self) -> datetime:
        return self.project.store.now()

    def insert(self, i: int, at: datetime) -> None:
        insert_orders(self.engine, self.table, [order(i, at=at)])

    def run(self, **options: Any) -> RunRecord:
        record = self.project.run(JOB, **options)
        self.marks.check()
        return record


def _counts(run: RunRecord) -> tuple[int, int, int]:
    return run.rows_read, run.rows_written, run.rows_updated


@pytest.fixture
def behind(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> Callable[..., _Setup]:
    """Rows 1-3 loaded (mark at row 3), then row 4 stamped ten seconds behind the clock commits,
    and row 5 arrives in time."""

    def make(**job: Any) -> _Setup:
        s = _Setup(db_url, engine_for, write_project, **job)
        for i, back in ((1, 6), (2, 5), (3, 4)):
            s.insert(i, s.start - _seconds(back))
        first = s.run()
        assert first.run_status is RunStatus.SUCCESS, first.error_message
        assert _counts(first) == (3, 3, 0)
        late = s.now() - _seconds(10)
        assert late < s.start - _seconds(4)  # below the committed mark
        s.insert(4, late)
        s.insert(5, s.start - _seconds(3))
        return s

    return make


def test_without_lag_a_row_stamped_behind_the_mark_is_lost(behind: Callable[..., _Setup]) -> None:
    s = behind()

    second = s.run()

    assert second.run_status is RunStatus.SUCCESS
    assert _counts(second) == (1, 1, 0)  # row 5 only
    target = snapshot(s.engine, TARGET)
    source = snapshot(s.engine, SOURCE)
    assert target != source
    assert [r["id"] for r in source if r not in target] == [4]
    assert s.run().rows_read == 0  # and no later run will ever read it


def test_with_lag_the_late_row_arrives_and_rereads_count_nothing(
    behind: Callable[..., _Setup],
) -> None:
    s = behind(watermark={"column": "updated_at", "tiebreaker": "id", "lag": "30s"})

    second = s.run()

    assert second.run_status is RunStatus.SUCCESS, second.error_message
    # Rows 1-3 are read again because of the lag; unchanged, they count nothing.
    assert _counts(second) == (5, 2, 0)
    assert_target_equals_source(s.engine)
    mark = s.project.watermark(JOB)
    assert mark is not None and mark.last_value_integer == 5

    quiet = s.run()
    assert (quiet.rows_written, quiet.rows_updated, quiet.rows_deleted) == (0, 0, 0)
    assert quiet.rows_read == 5

    # A real change stamped behind the mark (but after the row's previous version) is read
    # through the lag and counted once, as one update.
    update_order(s.engine, s.table, 2, amount="77.70", updated_at=s.start - _seconds(4.5))
    changed = s.run()
    assert _counts(changed) == (5, 0, 1)
    assert_target_equals_source(s.engine)
    assert sum(r.rows_written for r in s.project.runs(JOB)) == 5
    assert sum(r.rows_updated for r in s.project.runs(JOB)) == 1


class _CancelAfterFirstBatch:
    """Cancels the run as soon as its first batch is counted (like a signal at that moment)."""

    def __init__(self, token: CancelToken) -> None:
        self.token = token

    def started(self, job: JobSpec, run_id: int, description: str) -> None:
        pass

    def progressed(self, counts: Counts, batch_number: int, detail: str | None = None) -> None:
        self.token.cancel("cancelled by the test")

    def finished(self, run: RunRecord) -> None:
        pass


def test_an_interrupted_lag_run_resumes_without_losing_the_late_rows(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    s = _Setup(
        db_url,
        engine_for,
        write_project,
        watermark={"column": "updated_at", "tiebreaker": "id", "lag": "30s"},
    )
    # Rows 1-6 two seconds apart, 110 s to 100 s ago: the mark ends at row 6.
    for i in range(1, 7):
        s.insert(i, s.start - _seconds(112 - 2 * i))
    assert _counts(s.run()) == (6, 6, 0)
    # Row 7 commits late, stamped a second below the mark (well within the lag); 8 and 9 are new.
    s.insert(7, s.start - _seconds(101))
    s.insert(8, s.start - _seconds(5))
    s.insert(9, s.start - _seconds(4))

    # The lag run reads [mark - 30s, now] in key order: 1 2 3 | 4 5 7 | 6 8 9. It stops after
    # its first batch, which lies wholly below the mark.
    token = CancelToken()
    stopped = s.run(cancel=token, observer=_CancelAfterFirstBatch(token))
    assert stopped.run_status is RunStatus.CANCELLED
    resumed = s.run()
    assert resumed.run_status is RunStatus.SUCCESS, resumed.error_message
    s.run()  # and one more, as a scheduler would

    assert_target_equals_source(s.engine)
