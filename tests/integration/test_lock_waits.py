"""A target row or file held by another session while a batch is written: the run waits, gives
up, and fails *retryably*. A lock is no bad row: nothing is bisected or quarantined, and the next
run, once the lock is gone, loads everything. (PostgreSQL's case is in test_bad_rows.py.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from highmark import Project, RunStatus
from highmark.models import RunRecord
from tests.helpers import (
    BASE_TIME,
    copy_job,
    create_orders,
    insert_orders,
    order,
    orders_table,
    snapshot,
)

JOB = "orders_sync"


@pytest.fixture
def short_innodb_lock_wait() -> Iterator[None]:
    """MariaDB waits 50 s for a row lock by default, and only SET GLOBAL reaches the sessions
    highmark opens: 2 s during this test (conftest keeps every MariaDB test in one process)."""
    admin = create_engine("mysql+pymysql://root@127.0.0.1:3306/", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        before = int(conn.execute(text("SELECT @@GLOBAL.innodb_lock_wait_timeout")).scalar_one())
        conn.execute(text("SET GLOBAL innodb_lock_wait_timeout = 2"))
    try:
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"SET GLOBAL innodb_lock_wait_timeout = {before}"))
        admin.dispose()


def _first_load_then_changes(project: Project, source: Engine) -> None:
    """Ten rows loaded; then row 5 changes and rows 11 and 12 arrive (one batch of three)."""
    insert_orders(source, create_orders(source), [order(i) for i in range(1, 11)])
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    at = BASE_TIME + timedelta(hours=1)
    with source.begin() as conn:
        conn.execute(
            text("UPDATE orders SET amount = 99, updated_at = :at WHERE id = 5"),
            {"at": at if source.dialect.name == "postgresql" else at.replace(tzinfo=None)},
        )
    late = BASE_TIME + timedelta(hours=2)
    insert_orders(source, orders_table(), [order(i, at=late) for i in (11, 12)])


def _assert_retryable_and_not_bisected(project: Project, run: RunRecord, target: Engine) -> None:
    assert run.run_status is RunStatus.FAILED
    assert run.error_details is not None and run.error_details["retryable"] is True, (
        run.error_message
    )
    assert "lock" in (run.error_message or "").lower()
    assert run.rows_rejected == 0 and project.store.rejected_rows(JOB) == []
    # Nothing of the refused batch went in (rows 11 and 12 came with row 5).
    assert [r["id"] for r in snapshot(target, "orders_copy")] == list(range(1, 11))


def test_a_mariadb_lock_wait_timeout_stays_retryable_and_is_not_bisected(
    mysql_url: str,
    short_innodb_lock_wait: None,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    engine = engine_for(mysql_url)
    path = write_project(
        control=mysql_url,
        connections={"db": mysql_url},
        jobs={JOB: copy_job(on_bad_rows="quarantine")},
    )
    project = Project.load(path)
    _first_load_then_changes(project, engine)
    holder = engine.connect()
    try:
        holder.execute(text("SELECT * FROM orders_copy WHERE id = 5 FOR UPDATE"))

        run = project.run(JOB)
    finally:
        holder.rollback()
        holder.close()

    _assert_retryable_and_not_bisected(project, run, engine)
    assert project.run(JOB).run_status is RunStatus.SUCCESS  # once the lock is gone
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")


def test_a_locked_sqlite_target_stays_retryable_and_is_not_bisected(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    # highmark waits 60 s for a locked SQLite file; 1 s here (read when an engine connects).
    monkeypatch.setattr("highmark.db.SQLITE_BUSY_TIMEOUT_SECONDS", 1)
    shop, warehouse = tmp_path / "shop.db", tmp_path / "warehouse.db"
    source = engine_for(f"sqlite:///{shop}")
    target = engine_for(f"sqlite:///{warehouse}")
    job = {
        **copy_job(on_bad_rows="quarantine"),
        "source": {"connection": "shop", "table": "orders"},
        "target": {"connection": "warehouse", "table": "orders_copy"},
    }
    path = write_project(
        control=f"sqlite:///{tmp_path / 'control.db'}",
        connections={"shop": f"sqlite:///{shop}", "warehouse": f"sqlite:///{warehouse}"},
        jobs={JOB: job},
    )
    project = Project.load(path)
    _first_load_then_changes(project, source)
    holder = sqlite3.connect(warehouse, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the file

        run = project.run(JOB)
    finally:
        holder.rollback()
        holder.close()

    _assert_retryable_and_not_bisected(project, run, target)
    assert project.run(JOB).run_status is RunStatus.SUCCESS  # once the lock is gone
    assert snapshot(target, "orders_copy") == snapshot(source, "orders")
