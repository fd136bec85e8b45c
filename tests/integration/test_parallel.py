"""`parallelism: N`: a first PostgreSQL → PostgreSQL load in key ranges loaded at once.

The target ends equal to the source, the watermark at the greatest key, the next runs merge as
usual; a resumed parallel load clears and loads only the gaps between the ranges it had done; a
pair without the bulk path loads serially and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, text
from sqlalchemy.engine import Engine

from highmark import Project
from highmark.models import RunStatus
from tests.helpers import (
    BASE_TIME,
    copy_job,
    insert_orders,
    order,
    seed_orders,
    snapshot,
    update_order,
)

ROWS = 2400
BATCH = 150


def _setup(
    url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    *,
    parallelism: int,
    control: str | None = None,
    **job_options: Any,
) -> tuple[Engine, Table, Project]:
    engine = engine_for(url)
    table = seed_orders(engine, ROWS)
    job = copy_job(batch_size=BATCH, parallelism=parallelism, **job_options)
    path = write_project(control=control, connections={"db": url}, jobs={"sync": job})
    return engine, table, Project.load(path)


INTEGER_ID = {"column": "id", "type": "integer"}


@pytest.mark.parametrize(("parallelism", "watermark"), [(2, None), (16, None), (3, INTEGER_ID)])
def test_parallel_first_load_then_incremental_runs(
    parallelism: int,
    watermark: dict[str, str] | None,
    pg_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    options = {"watermark": watermark} if watermark else {}
    engine, table, project = _setup(
        pg_url, engine_for, write_project, parallelism=parallelism, **options
    )

    first = project.run("sync")

    assert first.run_status is RunStatus.SUCCESS, first.error_message
    assert (first.rows_read, first.rows_written) == (ROWS, ROWS)
    assert not any("parallelism" in note for note in first.notes or [])
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    mark = project.watermark("sync")
    assert mark is not None and mark.last_value_integer == ROWS  # the greatest (ts, id)
    assert project.checkpoint("sync") is None

    if watermark is None:  # an integer watermark reads appended rows only
        later = BASE_TIME + timedelta(days=2)
        update_order(engine, table, 7, amount=Decimal("99.99"), updated_at=later)
    insert_orders(engine, table, [order(ROWS + 1, at=BASE_TIME + timedelta(days=2))])
    second = project.run("sync")

    assert second.run_status is RunStatus.SUCCESS, second.error_message
    assert (second.rows_written, second.rows_updated) == (1, 1 if watermark is None else 0)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")


def test_parallel_first_load_skips_soft_deleted_rows(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine, _, project = _setup(
        pg_url,
        engine_for,
        write_project,
        parallelism=3,
        soft_delete={"column": "deleted_at", "mode": "delete"},
    )
    with engine.begin() as conn:
        conn.execute(text("UPDATE orders SET deleted_at = updated_at WHERE id % 10 = 0"))

    record = project.run("sync")

    assert record.run_status is RunStatus.SUCCESS, record.error_message
    live = [r for r in snapshot(engine, "orders") if r["deleted_at"] is None]
    assert snapshot(engine, "orders_copy") == live
    mark = project.watermark("sync")
    assert mark is not None and mark.last_value_integer in (ROWS, ROWS - 1)


def test_resumed_parallel_load_loads_only_the_gaps(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """A checkpoint as a killed parallel load leaves it: a prefix done, a range done past it, a
    range committed after the last checkpoint (its rows here made stale, to be replaced)."""
    engine, _, project = _setup(pg_url, engine_for, write_project, parallelism=3)
    assert project.run("sync").run_status is RunStatus.SUCCESS
    project.reset_watermark("sync")
    # (ts, id) keys: row i has updated_at BASE + i // 3 s.
    key = {i: (BASE_TIME + timedelta(seconds=i // 3), i) for i in range(1, ROWS + 1)}
    prefix, done_after, done_upto = 600, 1200, 1500
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM orders_copy WHERE id > :p AND NOT (id > :a AND id <= :u)"),
            {"p": prefix, "a": done_after, "u": done_upto},
        )
        # Rows 1800-1950 "committed just before the kill": wrong values, to be cleared.
        conn.execute(
            text(
                "INSERT INTO orders_copy SELECT id, customer, amount + 1000, updated_at, "
                "deleted_at FROM orders WHERE id > 1800 AND id <= 1950"
            )
        )

    def iso(i: int) -> str:
        return key[i][0].isoformat()

    checkpoint = {
        "run_id": 999_999,
        "mode": "incremental",
        "direct": True,
        "parallel": True,
        "watermark_type": "timestamp",
        "last_value_timestamp": iso(prefix),
        "last_value_integer": prefix,
        "window_high": (BASE_TIME + timedelta(days=1)).isoformat(),
        "window_high_reason": "pinned by the test",
        "batch_number": 5,
        "done_ranges": [
            {
                "after_timestamp": iso(done_after),
                "after_integer": done_after,
                "upto_timestamp": iso(done_upto),
                "upto_integer": done_upto,
            }
        ],
    }
    for name, value in checkpoint.items():
        project.set_checkpoint("sync", name, value)

    resumed = project.run("sync")

    assert resumed.run_status is RunStatus.SUCCESS, resumed.error_message
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    # Only the gaps were read: (600, 1200] and (1500, 2400].
    assert resumed.rows_read == (done_after - prefix) + (ROWS - done_upto)
    mark = project.watermark("sync")
    assert mark is not None and mark.last_value_integer == ROWS


def test_parallelism_without_the_bulk_path_loads_serially(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine, _, project = _setup(url, engine_for, write_project, parallelism=4)

    record = project.run("sync")

    assert record.run_status is RunStatus.SUCCESS, record.error_message
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    assert any("parallelism 4 not used" in note for note in record.notes or [])


def test_parallelism_is_validated(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    from highmark.errors import ConfigError

    url = f"sqlite:///{tmp_path / 'data.db'}"
    with pytest.raises(ConfigError, match="parallelism"):
        _setup(url, engine_for, write_project, parallelism=0)
