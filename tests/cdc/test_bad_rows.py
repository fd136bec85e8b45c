"""Bad rows on CDC jobs: a change set the target refuses for some changes' values is bisected down
to those changes; the others are applied; the run fails naming them (``on_bad_rows: fail``) or
quarantines them and moves the log position past them (``quarantine``). A lock wait stays a
retryable failure of the run, not bisected."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Index, text

from highmark import Project, RunStatus
from tests.cdc.support import JOB, SOURCE, TARGET, execute, run_ok, write_cdc_project
from tests.helpers import (
    create_checked_orders,
    create_orders,
    insert_orders,
    order,
    orders_table,
    short_lock_timeout,
    snapshot,
)

INSERT = "INSERT INTO orders (id, customer, amount, updated_at) VALUES "
REFUSED = [3, 12, 15]  # the keys whose last change the target refuses (a negative amount)


def _target(request: pytest.FixtureRequest, tmp_path: Path, which: str) -> str:
    if which == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return str(request.getfixturevalue("pg_url" if which == "postgresql" else "mysql_url"))


def _changes(engine: Engine) -> None:
    """Good and bad changes, in transactions of several keys; some keys change several times."""
    execute(engine, INSERT + "(11, 'good', 1.00, '2024-02-01 00:00:00')")
    execute(
        engine,
        INSERT + "(12, 'bad insert', -1.00, '2024-02-01 00:00:00')",
        "UPDATE orders SET amount = -5 WHERE id = 3",  # refused: the target keeps id 3 as it was
        "UPDATE orders SET customer = 'updated' WHERE id = 4",
        "DELETE FROM orders WHERE id = 5",
    )
    execute(  # one key inserted, updated, deleted; another made bad and then good again
        engine,
        INSERT + "(13, 'short lived', 2.00, '2024-02-01 00:00:00')",
        "UPDATE orders SET amount = -13 WHERE id = 13",
        "DELETE FROM orders WHERE id = 13",
        INSERT + "(14, 'made good', -2.00, '2024-02-01 00:00:00')",
        "UPDATE orders SET amount = 14 WHERE id = 14",
    )
    execute(engine, INSERT + "(15, 'good then bad', 3.00, '2024-02-01 00:00:00')")
    execute(
        engine, "UPDATE orders SET amount = -15 WHERE id = 15", "DELETE FROM orders WHERE id = 6"
    )
    execute(engine, INSERT + "(16, 'after the bad ones', 4.00, '2024-02-01 00:00:00')")


def _assert_source_minus_refused(
    source: Engine, target: Engine, before: dict[int, dict[str, Any]]
) -> None:
    want = {r["id"]: r for r in snapshot(source, SOURCE)}
    have = {r["id"]: r for r in snapshot(target, TARGET)}
    for key in REFUSED:  # a refused change leaves the row as the target had it
        want.pop(key)
        if key in before:
            want[key] = before[key]
    assert have == want


@pytest.mark.parametrize("target", ["sqlite", "postgresql", "mysql"])
def test_refused_changes_are_bisected_out_failed_then_quarantined(
    target: str,
    cdc_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    engine = engine_for(cdc_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 11)])
    target_url = _target(request, tmp_path, target)
    warehouse = engine_for(target_url)
    create_checked_orders(warehouse, TARGET)
    path = write_cdc_project(write_project, cdc_url, target_url=target_url, batch_size=100)
    project = Project.load(path)
    run_ok(project)
    start = project.watermark(JOB)
    assert start is not None and start.last_value_integer is not None
    before = {r["id"]: r for r in snapshot(warehouse, TARGET)}
    _changes(engine)

    failed = project.run(JOB)

    assert failed.run_status is RunStatus.FAILED
    assert failed.error_message is not None and "\n" not in failed.error_message
    assert failed.error_message.startswith("3 bad row(s) of orders not loaded into orders_copy")
    details = failed.error_details
    assert details is not None and details["exception_type"] == "BadRowsError"
    assert details["retryable"] is False and details["bad_rows_count"] == 3
    bad = {r["source_record_id"]: r["source_data"] for r in details["bad_rows"]}
    assert sorted(bad) == REFUSED
    assert Decimal(bad[3]["amount"]) == Decimal("-5") and bad[12]["customer"] == "bad insert"
    assert Decimal(bad[15]["amount"]) == Decimal("-15")
    if target != "sqlite":  # SQLite names the constraint, not in its diagnostics
        assert details["constraint"] == "amount_not_negative"
    _assert_source_minus_refused(engine, warehouse, before)
    mark = project.watermark(JOB)  # the position stays before the refused changes
    assert mark is not None and mark.last_value_integer == start.last_value_integer

    # The same changes again, quarantined: the run succeeds and the position moves past them.
    path = write_cdc_project(
        write_project, cdc_url, target_url=target_url, batch_size=100, on_bad_rows="quarantine"
    )
    project = Project.load(path)
    quarantined = run_ok(project)
    assert quarantined.rows_rejected == 3
    assert any("3 bad row(s) quarantined" in n for n in quarantined.notes or [])
    rejected = project.store.rejected_rows(JOB)
    assert sorted(r.source_record_id for r in rejected) == REFUSED
    assert all(r.run_id == quarantined.run_id for r in rejected)
    _assert_source_minus_refused(engine, warehouse, before)
    mark = project.watermark(JOB)
    assert mark is not None and (mark.last_value_integer or 0) > start.last_value_integer

    execute(engine, INSERT + "(17, 'later', 5.00, '2024-02-01 00:00:00')")
    later = run_ok(project)
    assert (later.rows_written, later.rows_rejected) == (1, 0)  # nothing refused again
    assert len(project.store.rejected_rows(JOB)) == 3


def test_a_lock_wait_during_an_apply_stays_retryable_and_is_not_bisected(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 11)])
    run_ok(Project.load(write_cdc_project(write_project, pg_url, on_bad_rows="quarantine")))
    # Only now (creating the slot waits for every transaction of the server to end), and for
    # the target's new sessions (a URL of their own: a pool of their own).
    short_lock_timeout(engine)
    target_url = f"{pg_url}?application_name=lock_waiter"
    path = write_cdc_project(write_project, pg_url, target_url=target_url, on_bad_rows="quarantine")
    project = Project.load(path)
    execute(
        engine,
        "UPDATE orders SET amount = 99 WHERE id = 5",
        INSERT + "(11, 'new', 1.00, '2024-02-01 00:00:00'), (12, 'new', 2.00, '2024-02-01')",
    )
    holder = engine.connect()
    try:
        holder.execute(text(f"SELECT * FROM {TARGET} WHERE id = 5 FOR UPDATE"))
        run = project.run(JOB)
    finally:
        holder.rollback()
        holder.close()

    assert run.run_status is RunStatus.FAILED
    assert run.error_details is not None and run.error_details["retryable"] is True
    assert "lock" in (run.error_message or "")
    assert run.rows_rejected == 0 and project.store.rejected_rows(JOB) == []
    # Not bisected: nothing of the refused set went in (rows 11 and 12 came with row 5).
    assert [r["id"] for r in snapshot(engine, TARGET)] == list(range(1, 11))
    run_ok(project)  # once the lock is gone
    assert snapshot(engine, TARGET) == snapshot(engine, SOURCE)


def test_a_row_a_check_refuses_is_named_while_the_snapshot_stages_then_quarantined(
    cdc_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """The snapshot's stage carries the target's CHECK: the row is refused as it is staged
    (bisected there); failing, the target is not touched; quarantined, the others go in."""
    engine = engine_for(cdc_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i, amount="-7" if i == 7 else None) for i in range(1, 31)])
    create_checked_orders(engine, TARGET)
    project = Project.load(write_cdc_project(write_project, cdc_url, batch_size=8))

    failed = project.run(JOB)

    assert failed.run_status is RunStatus.FAILED
    assert failed.error_details is not None and failed.error_details["source_record_id"] == 7
    assert failed.error_message is not None and "id 7" in failed.error_message
    assert snapshot(engine, TARGET) == []  # stopped before the merge

    path = write_cdc_project(write_project, cdc_url, batch_size=8, on_bad_rows="quarantine")
    project = Project.load(path)
    quarantined = run_ok(project)
    assert (quarantined.rows_rejected, quarantined.rows_read) == (1, 30)
    assert [r.source_record_id for r in project.store.rejected_rows(JOB)] == [7]
    assert [r["id"] for r in snapshot(engine, TARGET)] == [i for i in range(1, 31) if i != 7]

    execute(engine, "UPDATE orders SET amount = 7 WHERE id = 7", "DELETE FROM orders WHERE id = 8")
    run_ok(project)
    assert snapshot(engine, TARGET) == snapshot(engine, SOURCE)


def test_a_row_only_the_snapshots_merge_refuses_is_named_then_quarantined(
    cdc_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """A unique index of the target (not on its key) is met by the snapshot's merge, not by the
    stage: the merge is done again in pieces (bisected), the other rows go in."""
    engine = engine_for(cdc_url)
    table = create_orders(engine)
    rows = [order(i, customer="customer 1" if i == 7 else None) for i in range(1, 31)]
    insert_orders(engine, table, rows)
    target = orders_table(TARGET)
    Index("uq_target_customer", target.c.customer, unique=True)
    target.metadata.create_all(engine)
    project = Project.load(write_cdc_project(write_project, cdc_url, batch_size=8))

    failed = project.run(JOB)

    assert failed.run_status is RunStatus.FAILED
    assert failed.error_details is not None and failed.error_details["source_record_id"] == 7
    assert [r["id"] for r in snapshot(engine, TARGET)] == [i for i in range(1, 31) if i != 7]

    path = write_cdc_project(write_project, cdc_url, batch_size=8, on_bad_rows="quarantine")
    project = Project.load(path)
    quarantined = run_ok(project)
    assert quarantined.rows_rejected == 1
    assert [r.source_record_id for r in project.store.rejected_rows(JOB)] == [7]

    execute(engine, "UPDATE orders SET customer = 'customer 7' WHERE id = 7")
    run_ok(project)
    assert snapshot(engine, TARGET) == snapshot(engine, SOURCE)


def test_a_quarantined_change_keeps_masked_values_masked(
    cdc_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HM_TEST_MASK_KEY", "bad-rows-mask-key")
    engine = engine_for(cdc_url)
    create_orders(engine)
    create_checked_orders(engine, TARGET)
    path = write_cdc_project(
        write_project,
        cdc_url,
        on_bad_rows="quarantine",
        mask_columns=["customer"],
        mask_key="${HM_TEST_MASK_KEY}",
    )
    project = Project.load(path)
    run_ok(project)
    execute(
        engine,
        INSERT + "(1, 'raw-secret-good', 1.00, '2024-02-01 00:00:00'), "
        "(2, 'raw-secret-bad', -1.00, '2024-02-01 00:00:00')",
    )
    run = run_ok(project)
    assert run.rows_rejected == 1
    (rejected,) = project.store.rejected_rows(JOB)
    assert rejected.source_record_id == 2 and rejected.source_data is not None
    assert len(rejected.source_data["customer"]) == 64  # the hash, not the value
    said = f"{rejected.source_data} {rejected.error_message} {run.notes} {caplog.text}"
    assert "raw-secret" not in said and "bad-rows-mask-key" not in said
    assert [r["id"] for r in snapshot(engine, TARGET)] == [1]


def test_a_streamed_value_the_source_cannot_convert_is_a_bad_row(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """A change whose value Python cannot hold (a date before the year 1) used to fail every run
    at the same log position; it is now a bad row: named (fail), or quarantined with the log
    position moving past it. A later change of the same key in the same set replaces it."""
    engine = engine_for(pg_url)
    execute(
        engine,
        f"CREATE TABLE {SOURCE} (id bigint PRIMARY KEY, on_day date)",
        f"INSERT INTO {SOURCE} VALUES (1, '2024-01-01'), (2, '2024-01-01')",
    )
    path = write_cdc_project(write_project, pg_url, batch_size=100)
    project = Project.load(path)
    run_ok(project)
    start = project.watermark(JOB)
    assert start is not None
    execute(engine, f"INSERT INTO {SOURCE} VALUES (3, '0044-03-15 BC'), (4, '2024-02-02')")
    execute(engine, f"UPDATE {SOURCE} SET on_day = '0100-01-01 BC' WHERE id = 1")
    execute(engine, f"UPDATE {SOURCE} SET on_day = '2024-03-03' WHERE id = 1")  # replaces it

    failed = project.run(JOB)

    assert failed.run_status is RunStatus.FAILED
    assert failed.error_message is not None and "\n" not in failed.error_message
    assert "id 3" in failed.error_message and "0044-03-15 BC" in failed.error_message
    assert "id 1" not in failed.error_message
    mark = project.watermark(JOB)
    assert mark is not None and mark.last_value_integer == start.last_value_integer

    project = Project.load(
        write_cdc_project(write_project, pg_url, batch_size=100, on_bad_rows="quarantine")
    )
    quarantined = run_ok(project)
    assert quarantined.rows_rejected == 1
    rejected = project.store.rejected_rows(JOB)
    assert [(r.source_record_id, r.error_column) for r in rejected] == [(3, "on_day")]
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, CAST(on_day AS text) FROM {TARGET} ORDER BY id"))
        assert [tuple(r) for r in rows] == [
            (1, "2024-03-03"),
            (2, "2024-01-01"),
            (4, "2024-02-02"),
        ]
    mark = project.watermark(JOB)
    assert mark is not None and (mark.last_value_integer or 0) > (start.last_value_integer or 0)


def test_a_streamed_zero_date_is_a_bad_row_as_in_the_snapshot(
    mysql_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """MySQL/MariaDB keep '0000-00-00' outside strict mode; the binlog reader gives None for it.
    The snapshot cannot convert it (a bad row); the stream no longer writes a NULL instead."""
    engine = engine_for(mysql_url)
    zero = "SET SESSION sql_mode = ''"
    execute(
        engine,
        f"CREATE TABLE {SOURCE} (id BIGINT PRIMARY KEY, on_day DATE NULL)",
        zero,
        f"INSERT INTO {SOURCE} VALUES (1, '2024-01-01'), (2, '0000-00-00')",
    )
    path = write_cdc_project(write_project, mysql_url, on_bad_rows="quarantine")
    project = Project.load(path)
    first = run_ok(project)
    assert first.rows_rejected == 1
    execute(engine, zero, f"INSERT INTO {SOURCE} VALUES (3, '0000-00-00'), (4, '2024-02-02')")
    execute(engine, zero, f"UPDATE {SOURCE} SET on_day = '2024-00-10' WHERE id = 1")

    streamed = run_ok(project)

    assert streamed.rows_rejected == 2
    rejected = {r.source_record_id: r for r in project.store.rejected_rows(JOB)}
    assert sorted(rejected) == [1, 2, 3]
    assert rejected[3].error_column == "on_day"
    assert "zero or partial date" in rejected[3].error_message
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, on_day FROM {TARGET} ORDER BY id")).all()
    assert [r[0] for r in rows] == [1, 4]  # 1 keeps its last good day
    assert str(rows[0][1]) == "2024-01-01"
