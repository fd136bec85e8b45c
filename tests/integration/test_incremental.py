"""Incremental loads end to end on real SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from highmark import Project, RunStatus
from tests.helpers import (
    BASE_TIME,
    create_orders,
    insert_orders,
    order,
    orders_table,
    snapshot,
    update_order,
)


def _project(write_project: Callable[..., Path], url: str, **job: object) -> Project:
    spec = {
        "load_type": "incremental",
        "source": {"connection": "db", "table": "orders"},
        "target": {"connection": "db", "table": "orders_copy"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "soft_delete": {"column": "deleted_at", "mode": "mark"},
        "batch_size": 3,
    }
    spec.update(job)
    path = write_project(control=url, connections={"db": url}, jobs={"orders_sync": spec})
    return Project.load(path)


def test_ties_across_batch_boundaries(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    # Ten rows share one timestamp; batches of 3 cut the tie three times.
    insert_orders(engine, table, [order(i, at=BASE_TIME) for i in range(1, 11)])
    insert_orders(engine, table, [order(i) for i in range(11, 15)])
    project = _project(write_project, db_url)

    run = project.run("orders_sync")

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert (run.rows_read, run.rows_written, run.rows_updated, run.rows_deleted) == (14, 14, 0, 0)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    mark = project.watermark("orders_sync")
    assert mark is not None and mark.last_value_integer == 14
    assert mark.last_successful_run_id == run.run_id

    # A row later added at the tied timestamp with a higher id is picked up, not lost.
    insert_orders(engine, table, [order(20, at=BASE_TIME + timedelta(seconds=14))])
    again = project.run("orders_sync")
    assert (again.rows_read, again.rows_written) == (1, 1)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")


def test_updates_inserts_soft_deletes_then_noop(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 8)])
    project = _project(write_project, db_url)
    assert project.run("orders_sync").run_status is RunStatus.SUCCESS

    later = BASE_TIME + timedelta(hours=1)
    update_order(engine, table, 2, amount="99.99", updated_at=later)
    update_order(engine, table, 3, customer="renamed", updated_at=later)
    update_order(engine, table, 4, deleted_at=later, updated_at=later)
    insert_orders(engine, table, [order(8, at=later), order(9, at=later)])

    run = project.run("orders_sync")
    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert (run.rows_read, run.rows_written, run.rows_updated, run.rows_deleted) == (5, 2, 2, 1)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")

    noop = project.run("orders_sync")
    assert (noop.rows_read, noop.rows_written, noop.rows_updated, noop.rows_deleted) == (0, 0, 0, 0)
    assert noop.watermark_end == run.watermark_end


def test_soft_delete_mode_delete_removes_rows(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 6)])
    project = _project(
        write_project, db_url, soft_delete={"column": "deleted_at", "mode": "delete"}
    )
    project.run("orders_sync")
    later = BASE_TIME + timedelta(hours=1)
    update_order(engine, table, 1, deleted_at=later, updated_at=later)

    run = project.run("orders_sync")

    assert (run.rows_read, run.rows_written, run.rows_updated, run.rows_deleted) == (1, 0, 0, 1)
    assert [r["id"] for r in snapshot(engine, "orders_copy")] == [2, 3, 4, 5]


def test_integer_watermark_append_only(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 8)])
    project = _project(
        write_project, db_url, watermark={"column": "id", "type": "integer"}, soft_delete=None
    )
    first = project.run("orders_sync")
    assert (first.rows_read, first.rows_written, first.watermark_end_integer) == (7, 7, 7)
    insert_orders(engine, table, [order(i) for i in range(8, 10)])
    second = project.run("orders_sync")
    assert (
        second.rows_read,
        second.rows_written,
        second.watermark_start_integer,
        second.watermark_end_integer,
    ) == (2, 2, 7, 9)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")


def test_a_replayed_older_version_never_overwrites_a_newer_row(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """The version guard: re-reading a window (a backfill, a resumed batch) whose rows are older
    than the target's leaves the target's rows alone and counts nothing."""
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 6)])
    project = _project(write_project, db_url)
    assert project.run("orders_sync").run_status is RunStatus.SUCCESS
    copy = orders_table("orders_copy")
    newer = BASE_TIME + timedelta(days=1)
    update_order(engine, copy, 2, amount="77.77", updated_at=newer)  # the target moved on
    update_order(engine, table, 3, amount="33.33")  # a real change, same timestamp as before
    project.set_watermark("orders_sync", "2000-01-01T00:00:00Z")

    replay = project.run("orders_sync")

    assert replay.run_status is RunStatus.SUCCESS, replay.error_message
    assert (replay.rows_read, replay.rows_written, replay.rows_deleted) == (5, 0, 0)
    assert replay.rows_updated == 1  # row 3 only
    target = {r["id"]: r for r in snapshot(engine, "orders_copy")}
    assert str(target[2]["amount"]) == "77.77" and target[2]["updated_at"] == newer
    assert str(target[3]["amount"]) == "33.33"


def test_a_change_of_letter_case_or_trailing_space_alone_is_an_update(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """MariaDB's default collations call 'acme' and 'ACME ' equal: the merge's change test must
    not (a replayed window carries the new spelling with the old timestamp)."""
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 4)])
    project = _project(write_project, db_url)
    assert project.run("orders_sync").run_status is RunStatus.SUCCESS
    before = {r["id"]: r for r in snapshot(engine, "orders")}
    update_order(engine, table, 1, customer=before[1]["customer"].upper())
    update_order(engine, table, 2, customer=before[2]["customer"] + " ")
    project.set_watermark("orders_sync", "2000-01-01T00:00:00Z")

    replay = project.run("orders_sync")

    assert replay.run_status is RunStatus.SUCCESS, replay.error_message
    assert (replay.rows_read, replay.rows_written, replay.rows_updated) == (3, 0, 2)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
