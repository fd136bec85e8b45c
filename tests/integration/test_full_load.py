"""Full loads (and full refreshes) end to end on real SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from highmark import Counts, JobSpec, Project, RunRecord, RunStatus
from highmark.destinations.sql import FULL_STAGE_PREFIX
from tests.helpers import (
    BASE_TIME,
    create_orders,
    delete_order,
    insert_orders,
    order,
    snapshot,
    update_order,
)

JOB = "orders_full"


def _project(write_project: Callable[..., Path], url: str, **job: object) -> Project:
    spec: dict[str, Any] = {
        "load_type": "full",
        "source": {"connection": "db", "table": "orders"},
        "target": {"connection": "db", "table": "orders_copy"},
        "primary_key": ["id"],
        "batch_size": 3,
    }
    spec.update(job)
    path = write_project(control=url, connections={"db": url}, jobs={JOB: spec})
    return Project.load(path)


def _counts(run: RunRecord) -> tuple[int, int, int, int]:
    return (run.rows_read, run.rows_written, run.rows_updated, run.rows_deleted)


def _stage_tables(engine: Engine) -> list[str]:
    return [t for t in inspect(engine).get_table_names() if t.startswith(FULL_STAGE_PREFIX)]


def test_full_load_mirrors_updates_inserts_and_hard_deletes(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 8)])
    project = _project(write_project, db_url)

    first = project.run(JOB)

    assert first.run_status is RunStatus.SUCCESS, first.error_message
    assert _counts(first) == (7, 7, 0, 0)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    assert _stage_tables(engine) == []

    later = BASE_TIME + timedelta(hours=1)
    update_order(engine, table, 2, amount="99.99", updated_at=later)
    update_order(engine, table, 5, customer="renamed")  # changed without touching updated_at
    insert_orders(engine, table, [order(8), order(9), order(10)])
    delete_order(engine, table, 1)
    delete_order(engine, table, 7)

    second = project.run(JOB)

    assert second.run_status is RunStatus.SUCCESS, second.error_message
    assert _counts(second) == (8, 3, 2, 2)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    assert _stage_tables(engine) == []
    assert project.checkpoint(JOB) is None

    again = project.run(JOB)
    assert _counts(again) == (8, 0, 0, 0)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")


def test_full_load_soft_delete_mark(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 6)])
    project = _project(write_project, db_url, soft_delete={"column": "deleted_at", "mode": "mark"})
    assert project.run(JOB).run_status is RunStatus.SUCCESS

    later = BASE_TIME + timedelta(hours=1)
    update_order(engine, table, 2, deleted_at=later, updated_at=later)
    update_order(engine, table, 3, amount="7.77", updated_at=later)

    run = project.run(JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    # The marked row counts as deleted, not as updated; it stays in the target, marked.
    assert _counts(run) == (5, 0, 1, 1)
    copy = snapshot(engine, "orders_copy")
    assert copy == snapshot(engine, "orders")
    assert [r["id"] for r in copy if r["deleted_at"] is not None] == [2]


def test_full_load_soft_delete_delete(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 6)])
    later = BASE_TIME + timedelta(hours=1)
    update_order(engine, table, 5, deleted_at=later, updated_at=later)
    project = _project(
        write_project, db_url, soft_delete={"column": "deleted_at", "mode": "delete"}
    )

    first = project.run(JOB)
    assert first.run_status is RunStatus.SUCCESS, first.error_message
    assert _counts(first) == (4, 4, 0, 0)  # soft-deleted rows are never loaded
    assert [r["id"] for r in snapshot(engine, "orders_copy")] == [1, 2, 3, 4]

    update_order(engine, table, 1, deleted_at=later, updated_at=later)
    delete_order(engine, table, 4)

    second = project.run(JOB)
    assert second.run_status is RunStatus.SUCCESS, second.error_message
    assert _counts(second) == (2, 0, 0, 2)
    live = [r for r in snapshot(engine, "orders") if r["deleted_at"] is None]
    assert snapshot(engine, "orders_copy") == live


def test_full_refresh_of_incremental_job_drops_deleted_rows_and_keeps_watermark(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 8)])
    project = _project(
        write_project,
        db_url,
        load_type="incremental",
        watermark={"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
    )
    first = project.run(JOB)
    assert first.run_status is RunStatus.SUCCESS, first.error_message
    delete_order(engine, table, 3)
    delete_order(engine, table, 6)

    # An incremental run cannot see hard deletes...
    incremental = project.run(JOB)
    assert _counts(incremental) == (0, 0, 0, 0)
    assert len(snapshot(engine, "orders_copy")) == 7

    # ...a full refresh can.
    refresh = project.run(JOB, full_refresh=True)

    assert refresh.run_status is RunStatus.SUCCESS, refresh.error_message
    assert _counts(refresh) == (5, 0, 0, 2)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    assert _stage_tables(engine) == []
    mark = project.watermark(JOB)
    assert mark is not None
    assert mark.last_value_integer == 7
    assert mark.last_value_timestamp == BASE_TIME + timedelta(seconds=7)

    # The mark is still usable: the next incremental run reads only what is new.
    insert_orders(engine, table, [order(8)])
    after = project.run(JOB)
    assert after.run_status is RunStatus.SUCCESS, after.error_message
    assert _counts(after) == (1, 1, 0, 0)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")


class _Peeker:
    """Looks at the target from its own connection while the full load stages batches."""

    def __init__(self, engine: Engine, stage: str) -> None:
        self.engine = engine
        self.stage = stage
        self.seen: list[tuple[int, list[dict[str, Any]], bool]] = []

    def started(self, job: JobSpec, run_id: int, description: str) -> None:
        pass

    def progressed(self, counts: Counts, batch_number: int, detail: str | None = None) -> None:
        staged = self.stage in inspect(self.engine).get_table_names()
        self.seen.append((batch_number, snapshot(self.engine, "orders_copy"), staged))

    def finished(self, run: RunRecord) -> None:
        pass


def test_readers_never_see_a_half_loaded_target(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 8)])
    project = _project(write_project, db_url)
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    before = snapshot(engine, "orders_copy")

    for i in range(1, 8):
        update_order(engine, table, i, amount="1.00")
    insert_orders(engine, table, [order(i) for i in range(8, 12)])
    delete_order(engine, table, 4)
    peeker = _Peeker(engine, (FULL_STAGE_PREFIX + JOB)[:60])

    run = project.run(JOB, observer=peeker)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert _counts(run) == (10, 4, 6, 1)
    assert [batch for batch, _, _ in peeker.seen] == [1, 2, 3, 4]
    for batch, seen, staged in peeker.seen:
        assert staged, f"batch {batch}: the staging table is not there"
        assert seen == before, f"batch {batch}: the target changed before the load finished"
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    assert _stage_tables(engine) == []
