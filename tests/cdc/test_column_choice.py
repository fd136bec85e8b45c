"""columns, exclude_columns and mask_columns on CDC jobs (PostgreSQL logical decoding, MariaDB
binlog): the snapshot and every streamed insert, update and delete carry only the chosen columns,
masked ones as the same keyed hash a table job loads; no raw masked value reaches the target, the
run records or the logs."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect

from highmark import Project
from tests.cdc.support import JOB, SOURCE, TARGET, execute, run_ok, write_cdc_project
from tests.helpers import create_orders, insert_orders, order, snapshot

KEY = "cdc-mask-key-5e0a91"
SECRET = "secret-customer"  # every customer name holds it: none may reach the target or logs

CHOICES = {
    "exclude": {"exclude_columns": ["deleted_at"], "mask_columns": ["customer"]},
    "columns": {"columns": ["id", "customer", "amount"], "mask_columns": ["Customer"]},
}


def _hash(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _projection(source: Engine, kept: list[str]) -> list[dict[str, Any]]:
    """The source's rows as the job should load them: chosen columns, customer hashed."""
    return [
        {
            k: (_hash(v) if k == "customer" and v is not None else v)
            for k, v in r.items()
            if k in kept
        }
        for r in snapshot(source, SOURCE)
    ]


@pytest.mark.parametrize("choice", list(CHOICES))
def test_the_snapshot_and_the_stream_carry_only_the_chosen_columns_masked(
    choice: str,
    cdc_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HM_TEST_MASK_KEY", KEY)
    engine = engine_for(cdc_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i, customer=f"{SECRET} {i}") for i in range(1, 11)])
    path = write_cdc_project(
        write_project, cdc_url, mask_key="${HM_TEST_MASK_KEY}", **CHOICES[choice]
    )
    project = Project.load(path)

    run_ok(project)
    kept = [c["name"] for c in inspect(engine).get_columns(TARGET)]
    expected = ["id", "customer", "amount", "updated_at"][: 4 if choice == "exclude" else 3]
    assert kept == expected
    assert snapshot(engine, TARGET) == _projection(engine, kept)

    execute(
        engine,
        "INSERT INTO orders (id, customer, amount, updated_at) VALUES "
        f"(11, '{SECRET} 11', 1.00, '2024-02-01 00:00:00'), "
        f"(12, '{SECRET} 3', 2.00, '2024-02-01 00:00:00')",
    )
    execute(engine, f"UPDATE orders SET customer = '{SECRET} changed', amount = 7 WHERE id = 3")
    execute(engine, "UPDATE orders SET deleted_at = updated_at WHERE id = 4")  # left out or not
    execute(engine, "DELETE FROM orders WHERE id IN (5, 6)")
    execute(  # one transaction: insert, update, delete of the same key, and another insert
        engine,
        f"INSERT INTO orders (id, customer, amount, updated_at) VALUES "
        f"(13, '{SECRET} 13', 3.00, '2024-02-01 00:00:00')",
        f"UPDATE orders SET customer = '{SECRET} 13b' WHERE id = 13",
        "DELETE FROM orders WHERE id = 13",
        f"INSERT INTO orders (id, customer, amount, updated_at) VALUES "
        f"(14, '{SECRET} 14', 4.00, '2024-02-01 00:00:00')",
    )
    streamed = run_ok(project)
    assert (streamed.rows_written, streamed.rows_deleted) == (3, 2)
    assert snapshot(engine, TARGET) == _projection(engine, kept)
    rows = {r["id"]: r for r in snapshot(engine, TARGET)}
    # The same value hashes the same whether the snapshot or the log carried it.
    assert rows[12]["customer"] == _hash(f"{SECRET} 3") != rows[3]["customer"]

    # A full refresh reads everything again, masked the same way: nothing changes.
    again = run_ok(project, full_refresh=True)
    assert (again.rows_written, again.rows_updated, again.rows_deleted) == (0, 0, 0)

    assert project.reconcile(JOB).report.differences == 0  # masked columns left out of it
    assert not any(SECRET in str(r["customer"]) for r in snapshot(engine, TARGET))
    for record in project.runs():
        said = f"{record.error_message} {record.notes} {record.error_details}"
        assert SECRET not in said and KEY not in said
    logged = caplog.text
    assert SECRET not in logged and KEY not in logged
