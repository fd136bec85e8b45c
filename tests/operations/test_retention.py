"""Retention on real SQLite, PostgreSQL and MariaDB: old runs are rolled up into etl_run_summaries
and deleted in bounded batches, exactly once, whatever interrupts the purge; running runs and
watermarks stay; a dry run changes nothing; of several workers, one purges."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update

from highmark.config import RetentionSettings
from highmark.retention import PurgeReport, maybe_purge, purge
from highmark.store.retention import Batch, RetentionStore
from highmark.store.store import ControlStore
from highmark.store.tables import (
    etl_alerts,
    etl_audit,
    etl_job_runs,
    etl_job_slots,
    etl_maintenance,
    etl_run_summaries,
    etl_watermarks,
)
from tests.cli.runner import hm
from tests.faults.harness import highmark_env
from tests.operations.support import (
    add_running,
    add_runs,
    count,
    load,
    make_runs,
    old_day,
    roll_up,
    run_rows,
    summaries,
    table_rows,
    write_project,
)

SETTINGS = RetentionSettings(runs_days=30, summary_days=365, batch_size=100)


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> ControlStore:
    return load(write_project(tmp_path, db_url)).store


def add_watermark(store: ControlStore, job_id: str, updated: datetime) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            insert(etl_watermarks).values(
                job_id=job_id,
                source_table="orders",
                watermark_column="updated_at",
                watermark_type="timestamp",
                last_value_timestamp=updated,
                last_successful_run_id=None,
                last_updated_at=updated,
            )
        )


# ------------------------------------------------------------------------------------- roll-up


def test_purge_rolls_up_exactly_and_keeps_running_runs_and_watermarks(
    store: ControlStore,
) -> None:
    day = old_day(store)
    old = [
        *make_runs("a", day + timedelta(hours=1), 130),
        *make_runs("a", day + timedelta(days=1, hours=23, minutes=50), 90, seed=7),  # 2 days
        *make_runs("b", day + timedelta(hours=5), 40, seed=3),
    ]
    recent = make_runs("a", store.now() - timedelta(days=2), 20) + make_runs(
        "b", store.now() - timedelta(hours=1), 5
    )
    add_runs(store, old + recent)
    add_running(store, "b", day)  # started 40 days ago and still `running`
    add_watermark(store, "a", day - timedelta(days=1000))
    marks = table_rows(store, etl_watermarks)

    report = purge(store, SETTINGS)

    expected = roll_up(old)
    assert len(expected) == 4  # a: 3 days, b: 1 day
    assert summaries(store) == expected
    runs = report.tables["etl_job_runs"]
    assert (runs.rows, runs.batches) == (260, 3)
    assert (runs.oldest, runs.newest) == (
        min(r["started_at"] for r in old),
        max(r["started_at"] for r in old),
    )
    assert report.summaries_written >= len(expected)  # a day may be rolled up by two batches
    assert report.running_kept == 1
    left = run_rows(store)
    assert len(left) == len(recent) + 1
    assert [r["run_status"] for r in left if r["started_at"] < day + timedelta(days=3)] == [
        "running"
    ]
    assert table_rows(store, etl_watermarks) == marks  # never purged, however old

    again = purge(store, SETTINGS)  # nothing left to do
    assert again.rows == 0
    assert summaries(store) == expected


def test_a_day_rolled_up_in_two_purges_adds_up(store: ControlStore) -> None:
    """The cutoff falls inside a day: its morning is rolled up by one purge, its afternoon by a
    later one, which adds to the same summary row."""
    day = old_day(store)
    morning = make_runs("a", day + timedelta(hours=9), 30, every=timedelta(minutes=1))
    afternoon = make_runs("a", day + timedelta(hours=15), 25, every=timedelta(minutes=1), seed=2)
    add_runs(store, morning + afternoon)
    retention = RetentionStore(store)

    first = retention.purge_runs(day + timedelta(hours=12), 1000)

    assert first.span.rows == len(morning)
    assert summaries(store) == roll_up(morning)
    purge(store, SETTINGS)
    assert summaries(store) == roll_up(morning + afternoon)
    assert count(store, etl_job_runs) == 0


def test_purge_deletes_in_bounded_batches(store: ControlStore) -> None:
    day = old_day(store, 50)
    old = make_runs("a", day, 1050, every=timedelta(minutes=1))
    add_runs(store, old)
    batches: list[tuple[str, Batch]] = []

    report = purge(store, SETTINGS, on_batch=lambda table, batch: batches.append((table, batch)))

    assert report.tables["etl_job_runs"].batches == 11
    assert report.tables["etl_job_runs"].rows == 1050
    assert [b.span.rows for _, b in batches] == [100] * 10 + [50]
    assert summaries(store) == roll_up(old)
    assert count(store, etl_job_runs) == 0


def test_purge_alerts_slots_and_summaries(store: ControlStore) -> None:
    now = store.now()
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    with store.engine.begin() as connection:
        connection.execute(
            insert(etl_alerts),
            [
                {
                    "job_id": "a",
                    "event": "failed",
                    "dedup_key": f"failed:{i}",
                    "sink": "webhook json example.com",
                    "message": "a failed",
                    "status": "sent",
                    "attempts": 1,
                    "created_at": (old if i < 150 else recent) - timedelta(minutes=i),
                }
                for i in range(160)
            ],
        )
        connection.execute(
            insert(etl_job_slots),
            [
                {
                    "job_id": "a",
                    "scheduled_for": at,
                    "status": status,
                    "not_before": at,
                    "attempt": 1,
                    "created_at": at,
                    "updated_at": at,
                }
                for at, status in [
                    (old - timedelta(hours=1), "done"),
                    (old - timedelta(hours=2), "failed"),
                    (old - timedelta(hours=3), "cancelled"),
                    (old - timedelta(hours=4), "skipped"),
                    (old - timedelta(hours=5), "pending"),  # never finished: kept
                    (old - timedelta(hours=6), "retry_wait"),
                    (recent, "done"),
                ]
            ],
        )
        connection.execute(
            insert(etl_run_summaries),
            [
                {"job_id": job_id, "day": (now - timedelta(days=days)).date(), "runs": 1}
                for job_id in ("a", "b")
                for days in (100, 364, 367, 400, 800)
            ],
        )

    report = purge(store, SETTINGS)

    assert (report.tables["etl_alerts"].rows, report.tables["etl_alerts"].batches) == (150, 2)
    assert count(store, etl_alerts) == 10
    assert report.tables["etl_job_slots"].rows == 4
    assert sorted(r[2] for r in table_rows(store, etl_job_slots)) == [
        "done",
        "pending",
        "retry_wait",
    ]
    assert report.tables["etl_run_summaries"].rows == 6
    assert report.tables["etl_run_summaries"].oldest == (now - timedelta(days=800)).date()
    assert report.tables["etl_run_summaries"].newest == (now - timedelta(days=367)).date()
    assert sorted(day for _, day in summaries(store)) == sorted(
        [(now - timedelta(days=d)).date() for d in (100, 364)] * 2
    )


def test_purge_deletes_audit_entries_older_than_audit_days(store: ControlStore) -> None:
    now = store.now()
    settings = SETTINGS.model_copy(update={"audit_days": 60})
    with store.engine.begin() as connection:
        connection.execute(
            insert(etl_audit),
            [
                {
                    "occurred_at": now - timedelta(days=days, minutes=i),
                    "actor": "ops",
                    "action": "POST /api/v1/jobs/{job_id}/runs",
                    "status_code": 202,
                }
                for i, days in enumerate([61] * 120 + [59] * 5)
            ],
        )

    report = purge(store, settings)

    audit = report.tables["etl_audit"]
    assert (audit.rows, audit.batches) == (120, 2)
    assert audit.newest is not None and audit.newest < now - timedelta(days=60)
    assert count(store, etl_audit) == 5  # the recent ones, kept longer than run detail (30 d)


# ------------------------------------------------------------------------------------ dry run


def test_dry_run_changes_nothing_and_counts_right(store: ControlStore) -> None:
    day = old_day(store)
    old = make_runs("a", day, 250, every=timedelta(minutes=5))
    add_runs(store, old + make_runs("b", store.now() - timedelta(days=1), 10))
    add_running(store, "a", day)
    with store.engine.begin() as connection:
        connection.execute(
            insert(etl_run_summaries),
            [{"job_id": "a", "day": (day - timedelta(days=400)).date(), "runs": 3}],
        )
    tables = [etl_job_runs, etl_run_summaries, etl_alerts, etl_job_slots, etl_watermarks]
    before = {t.name: table_rows(store, t) for t in tables}

    report = purge(store, SETTINGS, dry_run=True)

    assert {t.name: table_rows(store, t) for t in tables} == before
    assert report.dry_run
    runs = report.tables["etl_job_runs"]
    assert (runs.rows, runs.oldest, runs.newest) == (
        250,
        old[0]["started_at"],
        old[-1]["started_at"],
    )
    assert report.tables["etl_run_summaries"].rows == 1
    assert report.tables["etl_alerts"].rows == 0
    assert report.running_kept == 1
    assert report.summaries_written == 0
    # What the dry run announced is what a real purge then does.
    done = purge(store, SETTINGS)
    assert {n: (t.rows, t.oldest, t.newest) for n, t in done.tables.items()} == {
        n: (t.rows, t.oldest, t.newest) for n, t in report.tables.items()
    }


def test_purge_command(db_url: str, tmp_path: Path) -> None:
    project = write_project(tmp_path, db_url, retention={"runs_days": 30, "batch_size": 100})
    store = load(project).store
    day = old_day(store)
    add_runs(store, make_runs("a", day, 120, every=timedelta(minutes=1)))

    dry = hm("purge", "--dry-run", cwd=tmp_path)
    assert "etl_job_runs: would delete 120 rows" in dry.out
    assert "dry run: nothing was changed" in dry.out
    assert count(store, etl_job_runs) == 120
    done = hm("purge", "--json", cwd=tmp_path).json()
    assert not done["dry_run"]
    runs = next(t for t in done["tables"] if t["table"] == "etl_job_runs")
    assert (runs["rows"], runs["batches"]) == (120, 2)
    assert runs["oldest"] == day.isoformat().replace("+00:00", "Z")
    assert count(store, etl_job_runs) == 0
    assert "etl_job_runs: deleted 0 rows" in hm("purge", cwd=tmp_path).out


# -------------------------------------------------------------------------------- interrupted


@pytest.mark.parametrize(
    ("failpoint", "deleted"),
    [("between_purge_batches:3", 300), ("in_purge_batch:2", 100)],
)
def test_killed_purge_loses_nothing(
    db_url: str, tmp_path: Path, failpoint: str, deleted: int
) -> None:
    """SIGKILL after the third batch committed, or inside the second before it commits: the
    runs gone are exactly the runs summarised, and the next purge finishes the job."""
    project = write_project(tmp_path, db_url, retention={"runs_days": 30, "batch_size": 100})
    store = load(project).store
    old = make_runs("a", old_day(store), 1050, every=timedelta(minutes=1))
    add_runs(store, old)

    killed = hm("purge", cwd=tmp_path, env=highmark_env(HIGHMARK_FAILPOINT=failpoint), code=-9)
    assert killed.out == ""

    left = {r["started_at"] for r in run_rows(store)}
    gone = [r for r in old if r["started_at"] not in left]
    assert len(gone) == deleted
    assert summaries(store) == roll_up(gone)
    hm("purge", cwd=tmp_path)
    assert count(store, etl_job_runs) == 0
    assert summaries(store) == roll_up(old)


# ----------------------------------------------------------------------------------- concurrent


@pytest.fixture(params=["postgresql", "mysql"])
def server_store(request: pytest.FixtureRequest, tmp_path: Path) -> ControlStore:
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return load(write_project(tmp_path, str(url))).store


def race(n: int, call: Any) -> list[Any]:
    """Run ``call(i)`` in ``n`` threads released at once; their results, in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_concurrent_purges_share_the_work(server_store: ControlStore) -> None:
    store = server_store
    old = make_runs("a", old_day(store), 1050, every=timedelta(minutes=1))
    old += make_runs("b", old_day(store), 500, every=timedelta(minutes=2), seed=5)
    add_runs(store, old)

    reports: list[PurgeReport] = race(3, lambda _: purge(store, SETTINGS))
    while count(store, etl_job_runs):  # a purge stops at a batch cut short by another's locks
        reports.append(purge(store, SETTINGS))

    assert sum(r.tables["etl_job_runs"].rows for r in reports) == len(old)
    assert summaries(store) == roll_up(old)


def test_maybe_purge_runs_once_between_racing_workers(server_store: ControlStore) -> None:
    store = server_store
    old = make_runs("a", old_day(store), 300, every=timedelta(minutes=1))
    add_runs(store, old)
    settings = SETTINGS.model_copy(update={"purge_every": timedelta(hours=1)})

    results = race(6, lambda i: maybe_purge(store, settings, f"worker-{i}"))

    winners = [i for i, report in enumerate(results) if report is not None]
    assert len(winners) == 1
    assert results[winners[0]].tables["etl_job_runs"].rows == 300
    assert summaries(store) == roll_up(old)
    assert store.last_maintenance("purge")[1] == f"worker-{winners[0]}"
    assert maybe_purge(store, settings, "late") is None  # not an hour yet


def test_maybe_purge_waits_for_purge_every(store: ControlStore) -> None:
    assert maybe_purge(store, SETTINGS, "w1") is None  # purge_every unset: only `highmark purge`
    settings = SETTINGS.model_copy(update={"purge_every": timedelta(hours=6)})
    add_runs(store, make_runs("a", old_day(store), 10))

    first = maybe_purge(store, settings, "w1")
    assert first is not None and first.tables["etl_job_runs"].rows == 10
    assert maybe_purge(store, settings, "w2") is None
    last, _ = store.last_maintenance("purge")
    assert last is not None
    with store.engine.begin() as connection:  # six hours later
        connection.execute(
            update(etl_maintenance).values(last_run_at=last - timedelta(hours=6, seconds=1))
        )
    assert maybe_purge(store, settings, "w2") is not None
    assert store.last_maintenance("purge")[1] == "w2"
