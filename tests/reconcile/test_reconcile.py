"""`highmark reconcile`: what a timestamp window cannot see (hard deletes, updates that forgot
`updated_at`, rows committed below the mark) found by comparing key ranges inside each database,
and repaired as a run of its own that leaves the watermark where it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from highmark import Project
from highmark.reconcile import LEAF_ROWS
from tests.faults.harness import run
from tests.helpers import (
    BASE_TIME,
    copy_job,
    create_checked_orders,
    insert_orders,
    order,
    orders_table,
    seed_orders,
    snapshot,
)

JOB = "sync"


def _project(
    write_project: Callable[..., Path], url: str, target: str | None = None, **options: object
) -> Path:
    return write_project(
        control=url,
        connections={"db": url, "dst": target or url},
        jobs={
            JOB: {
                **copy_job(reconcile={"chunk_rows": 400}),
                "target": {"connection": "dst", "table": "orders_copy"},
                **options,
            }
        },
    )


def _harm(engine: Engine) -> None:
    """What no timestamp window sees."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM orders WHERE id IN (5, 150, 299)"))  # hard deletes
        conn.execute(text("UPDATE orders SET customer = 'sneaky' WHERE id = 77"))  # no bump
    insert_orders(engine, orders_table(), [order(5000, at=BASE_TIME - timedelta(days=1))])


def test_finds_and_repairs_what_the_window_missed(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    seed_orders(engine, 1200)
    project = Project.load(_project(write_project, db_url))
    assert project.run(JOB).run_status.value == "success"
    assert project.reconcile(JOB).report.differences == 0
    mark = project.watermark(JOB)
    _harm(engine)
    assert project.run(JOB).run_status.value == "success"  # the window sees none of it

    found = project.reconcile(JOB).report
    assert (found.missing, found.extra, found.different) == (1, 3, 1)
    assert sorted(found.samples["extra"]) == [5, 150, 299]
    assert found.samples["missing"] == [5000] and found.samples["different"] == [77]
    assert found.rows_fetched < 600  # only the ranges that differ were read

    repaired = project.reconcile(JOB, repair=True)
    record = repaired.run
    assert record.run_status.value == "success"
    assert (record.rows_written, record.rows_updated, record.rows_deleted) == (1, 1, 3)
    after = project.watermark(JOB)
    assert (after.last_value_timestamp, after.last_value_integer) == (
        mark.last_value_timestamp,
        mark.last_value_integer,
    ) or after.last_successful_run_id != record.run_id
    assert after.last_successful_run_id != record.run_id
    assert snapshot(engine, "orders") == snapshot(engine, "orders_copy")
    assert project.reconcile(JOB).report.differences == 0


def test_one_changed_row_is_found_without_reading_the_table(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    seed_orders(engine, 5000)
    project = Project.load(_project(write_project, pg_url))
    assert project.run(JOB).run_status.value == "success"
    with engine.begin() as conn:
        conn.execute(text("UPDATE orders_copy SET amount = amount + 1 WHERE id = 4321"))
    report = project.reconcile(JOB).report
    assert (report.missing, report.extra, report.different) == (0, 0, 1)
    assert report.leaves == 1 and report.rows_fetched <= 2 * LEAF_ROWS


@pytest.mark.parametrize("target", ["sqlite", "mysql"])
def test_hashes_agree_across_databases(
    target: str,
    pg_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    engine = engine_for(pg_url)
    seed_orders(engine, 400)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE orders SET customer = 'Ünïcødé ✓', deleted_at = updated_at WHERE id = 7")
        )
        # Hashed as the last and first instants SQLite and MariaDB keep for them (to_char, on
        # PostgreSQL, gives NULL).
        conn.execute(text("UPDATE orders SET deleted_at = 'infinity' WHERE id = 8"))
        conn.execute(text("UPDATE orders SET deleted_at = '-infinity' WHERE id = 9"))
    other = (
        f"sqlite:///{tmp_path / 'w.db'}"
        if target == "sqlite"
        else request.getfixturevalue("mysql_url")
    )
    project = Project.load(_project(write_project, pg_url, other))
    assert project.run(JOB).run_status.value == "success"
    report = project.reconcile(JOB).report
    assert report.differences == 0
    assert report.rows_fetched == 0, "equal rows hashed differently on the two databases"


def test_marks_hard_deletes_and_cli(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    seed_orders(engine, 50)
    path = _project(write_project, pg_url, soft_delete={"column": "deleted_at", "mode": "mark"})
    assert run(path, "run", JOB).returncode == 0
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM orders WHERE id = 10"))
    found = run(path, "reconcile", JOB, "--json")
    assert found.returncode == 1
    assert json.loads(found.stdout)["samples"]["extra"] == [10]
    fixed = run(path, "reconcile", JOB, "--repair")
    assert fixed.returncode == 0, fixed.stderr
    assert "1 deleted; watermark unchanged" in fixed.stdout
    rows = {r["id"]: r for r in snapshot(engine, "orders_copy")}
    assert rows[10]["deleted_at"] is not None  # marked, kept
    assert run(path, "reconcile", JOB).returncode == 0


@pytest.mark.parametrize("backend", ["mysql", "sqlite"])
def test_hashes_of_wall_times_in_a_named_zone_tell_rows_apart(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    """Naive timestamps read in a named zone: on a MariaDB server without time zone tables
    (CONVERT_TZ is NULL there), a changed amount is still found; on SQLite, a target in another
    zone holding the source's wall times as they are holds other instants, and that is found."""
    if backend == "mysql":
        source = target = str(request.getfixturevalue("mysql_url"))
        change, target_zone, different = "amount = amount + 1 WHERE id = 77", "Europe/Paris", 1
    else:
        source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
        change, target_zone, different = "updated_at = :wall", "Asia/Tokyo", 400
    seed_orders(engine_for(source), 400, per_timestamp=1000)  # every row at BASE_TIME
    path = write_project(
        connections={
            "db": {"url": source, "timezone": "Europe/Paris"},
            "dst": {"url": target, "timezone": target_zone},
        },
        jobs={
            JOB: {
                **copy_job(reconcile={"chunk_rows": 400}),
                "target": {"connection": "dst", "table": "orders_copy"},
            }
        },
    )
    project = Project.load(path)
    assert project.run(JOB).run_status.value == "success"
    assert project.reconcile(JOB).report.differences == 0
    with engine_for(target).begin() as conn:
        wall = f"{BASE_TIME:%Y-%m-%d %H:%M:%S.%f}"  # the source's text (SQLAlchemy's form)
        conn.execute(text(f"UPDATE orders_copy SET {change}"), {"wall": wall})
    report = project.reconcile(JOB).report
    assert (report.missing, report.extra, report.different) == (0, 0, different)


@pytest.mark.parametrize("policy", ["fail", "quarantine"])
def test_a_repair_the_target_refuses_is_bisected_down_to_its_row(
    policy: str,
    pg_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    """A leaf whose repair the target refuses for one row (its CHECK) repairs the others; the
    row fails the run, named, or is quarantined, by the job's on_bad_rows."""
    engine = engine_for(pg_url)
    seed_orders(engine, 600)
    create_checked_orders(engine)  # orders_copy refuses a negative amount
    project = Project.load(_project(write_project, pg_url, on_bad_rows=policy))
    assert project.run(JOB).run_status.value == "success"
    with engine.begin() as conn:  # what no window sees: updates that forgot updated_at
        conn.execute(text("UPDATE orders SET amount = -1 WHERE id = 77"))
        conn.execute(text("UPDATE orders SET customer = 'sneaky' WHERE id IN (76, 78)"))
        conn.execute(text("DELETE FROM orders_copy WHERE id = 300"))

    record = project.reconcile(JOB, repair=True).run

    if policy == "fail":
        assert record.run_status.value == "failed"
        assert record.error_message is not None and "\n" not in record.error_message
        assert "id 77" in record.error_message and "amount_not_negative" in record.error_message
    else:
        assert record.run_status.value == "success", record.error_message
        assert record.rows_rejected == 1
        assert [r.source_record_id for r in project.store.rejected_rows(JOB)] == [77]
    target = {r["id"]: r for r in snapshot(engine, "orders_copy")}
    assert target[76]["customer"] == target[78]["customer"] == "sneaky"  # repaired beside it
    assert 300 in target and target[77]["amount"] >= 0
