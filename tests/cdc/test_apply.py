"""A CDC job end to end: snapshot, then inserts, updates, hard deletes, multi-statement and
rolled-back transactions, TRUNCATE and an added column, each run leaving the target equal to
the source, with exact counts and a log position as the watermark."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from highmark import Project, infinity
from highmark.models import WatermarkType
from tests.cdc.support import JOB, TARGET, assert_equal, execute, run_ok, write_cdc_project
from tests.helpers import create_orders, insert_orders, order, snapshot


def test_snapshot_then_changes(
    cdc_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(cdc_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 11)])
    project = Project.load(write_cdc_project(write_project, cdc_url))

    first = run_ok(project)
    assert_equal(engine)
    assert (first.rows_read, first.rows_written) == (10, 10)
    mark = project.watermark(JOB)
    assert mark is not None and mark.watermark_type == WatermarkType.LOG_POSITION.value
    start = mark.last_value_integer
    assert first.watermark_end_integer == start

    execute(
        engine,
        "INSERT INTO orders (id, customer, amount, updated_at) VALUES "
        "(11, 'new', 1.00, '2024-02-01 00:00:00'), (12, 'new', 2.00, '2024-02-01 00:00:00')",
    )
    execute(engine, "UPDATE orders SET amount = 99.99 WHERE id = 3")
    execute(engine, "DELETE FROM orders WHERE id IN (4, 5)")
    # One transaction of several statements, touching one row more than once.
    execute(
        engine,
        "UPDATE orders SET customer = 'first' WHERE id = 6",
        "INSERT INTO orders (id, customer, amount, updated_at) VALUES "
        "(13, 'x', 3.00, '2024-02-01 00:00:00')",
        "UPDATE orders SET customer = 'second' WHERE id = 6",
        "DELETE FROM orders WHERE id = 7",
    )
    with engine.connect() as conn:  # rolled back: nothing of it may reach the target
        conn.execute(text("UPDATE orders SET customer = 'rolled back' WHERE id = 8"))
        conn.execute(text("DELETE FROM orders WHERE id = 9"))
        conn.rollback()
    second = run_ok(project)
    assert_equal(engine)
    assert (second.rows_written, second.rows_updated, second.rows_deleted) == (3, 2, 3)
    assert second.watermark_end_integer is not None and second.watermark_end_integer > start
    assert second.watermark_end is not None  # the commit time of the last change applied

    nothing = run_ok(project)
    assert (nothing.rows_written, nothing.rows_updated, nothing.rows_deleted) == (0, 0, 0)

    execute(engine, "DELETE FROM orders WHERE id = 1")
    execute(engine, "TRUNCATE TABLE orders")
    execute(
        engine,
        "INSERT INTO orders (id, customer, amount, updated_at) VALUES "
        "(20, 'after truncate', 5.00, '2024-03-01 00:00:00')",
    )
    run_ok(project)
    assert_equal(engine)
    assert [r["id"] for r in snapshot(engine, TARGET)] == [20]

    execute(engine, "ALTER TABLE orders ADD COLUMN channel VARCHAR(20)")
    execute(
        engine,
        "INSERT INTO orders (id, customer, amount, updated_at, channel) VALUES "
        "(21, 'with channel', 6.00, '2024-03-01 00:00:00', 'web')",
    )
    added = run_ok(project)
    assert_equal(engine)
    assert any("column orders_copy.channel added" in note for note in added.notes or [])
    history = project.schema_history(JOB)
    assert [(c.column_name, c.change_kind, c.run_id) for c in history] == [
        ("channel", "add", added.run_id)
    ]
    assert {r["id"]: r["channel"] for r in snapshot(engine, TARGET)} == {20: None, 21: "web"}


def test_hard_deletes_marked_in_another_database(
    cdc_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """soft_delete mode mark, on a column the source does not have: a hard delete sets it (the
    delete's commit time), a TRUNCATE sets it on every row, a key inserted again clears it."""
    engine = engine_for(cdc_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 6)])
    warehouse = f"sqlite:///{tmp_path / 'warehouse.db'}"
    path = write_cdc_project(
        write_project,
        cdc_url,
        target_url=warehouse,
        soft_delete={"column": "removed_at", "mode": "mark"},
    )
    project = Project.load(path)
    run_ok(project)
    target = engine_for(warehouse)
    execute(engine, "DELETE FROM orders WHERE id IN (1, 2)")
    deleted = run_ok(project)
    assert deleted.rows_deleted == 2
    rows = {r["id"]: r for r in snapshot(target, TARGET)}
    assert len(rows) == 5
    assert rows[1]["removed_at"] is not None and rows[3]["removed_at"] is None
    execute(
        engine,
        "INSERT INTO orders (id, customer, amount, updated_at) VALUES "
        "(1, 'back again', 1.00, '2024-02-01 00:00:00')",
    )
    run_ok(project)
    rows = {r["id"]: r for r in snapshot(target, TARGET)}
    assert rows[1]["removed_at"] is None and rows[1]["customer"] == "back again"
    assert rows[2]["removed_at"] is not None
    live = [r for r in snapshot(target, TARGET) if r["removed_at"] is None]
    source = snapshot(engine, "orders")
    assert [{k: v for k, v in r.items() if k != "removed_at"} for r in live] == source


def test_unchanged_large_values_are_kept(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """PostgreSQL does not log a TOASTed value an update left alone: the target keeps its own."""
    import secrets

    engine = engine_for(pg_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 4)])
    execute(engine, "ALTER TABLE orders ADD COLUMN blob text")
    big = secrets.token_hex(8000)  # incompressible: stored out of line
    with engine.begin() as conn:
        conn.execute(text("UPDATE orders SET blob = :b WHERE id = 2"), {"b": big})
    project = Project.load(write_cdc_project(write_project, pg_url))
    run_ok(project)
    execute(engine, "UPDATE orders SET amount = 42 WHERE id = 2")
    execute(engine, "UPDATE orders SET amount = 43 WHERE id = 2")
    changed = run_ok(project)
    assert changed.rows_updated == 1
    assert_equal(engine)
    assert {r["id"]: r["blob"] for r in snapshot(engine, TARGET)}[2] == big


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
def test_infinite_timestamps_and_dates_stream(
    target: str,
    pg_url: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    """PostgreSQL's infinity and -infinity, in the snapshot and in streamed changes: kept by a
    PostgreSQL target, the last and first instant and day in SQLite (highmark/infinity.py)."""
    engine = engine_for(pg_url)
    execute(
        engine,
        "CREATE TABLE orders (id bigint PRIMARY KEY, valid_to timestamptz, since date)",
        "INSERT INTO orders VALUES (1, 'infinity', '-infinity'), (2, '2024-01-01', '2024-01-01')",
    )
    warehouse = pg_url if target == "postgresql" else f"sqlite:///{tmp_path / 'w.db'}"
    project = Project.load(write_cdc_project(write_project, pg_url, target_url=warehouse))
    run_ok(project)
    execute(
        engine,
        "UPDATE orders SET valid_to = '-infinity', since = 'infinity' WHERE id = 2",
        "INSERT INTO orders VALUES (3, 'infinity', 'infinity')",
    )
    run_ok(project)
    with engine_for(warehouse).connect() as conn:
        found = conn.execute(
            text(
                f"SELECT id, CAST(valid_to AS text), CAST(since AS text) FROM {TARGET} ORDER BY id"
            )
        ).all()
    last, first, last_day, first_day = ("infinity", "-infinity", "infinity", "-infinity")
    if target == "sqlite":
        last, first = infinity.LAST_INSTANT_TEXT, infinity.FIRST_INSTANT_TEXT
        last_day, first_day = "9999-12-31", "0001-01-01"
    assert [tuple(r) for r in found] == [
        (1, last, first_day),
        (2, first, last_day),
        (3, last, last_day),
    ]
