"""Bad rows through the ``highmark`` command: a run that fails names the row in one line (and its
job once), ``rejected`` lists the quarantine, ``rejected retry`` empties it once the target is
fixed; ``runs`` and ``status`` show ``rows_rejected``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, Index, text

from tests.cli.runner import assert_error, hm
from tests.cli.test_cli import job, write_yaml
from tests.helpers import create_orders, insert_orders, order, orders_table


def _folder(tmp_path: Path, engine_for: Callable[[str], Engine], **options: object) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    shop = engine_for(f"sqlite:///{folder / 'shop.db'}")
    rows = [order(i) for i in range(1, 101)]
    rows[41]["customer"] = "customer 1"  # id 42: refused by the target's unique index
    insert_orders(shop, create_orders(shop), rows)
    warehouse = engine_for(f"sqlite:///{folder / 'warehouse.db'}")
    target = orders_table("orders")
    Index("uq_customer", target.c.customer, unique=True)
    target.metadata.create_all(warehouse)
    write_yaml(
        folder / "highmark.yml",
        {
            **options,
            "connections": {"shop": "sqlite:///shop.db", "warehouse": "sqlite:///warehouse.db"},
            "jobs": {"orders_sync": job("orders", "orders", batch_size=30)},
        },
    )
    return folder


def test_a_bad_row_fails_the_run_in_one_line_naming_the_row_and_the_job_once(
    tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    folder = _folder(tmp_path, engine_for)

    failed = hm("run", "orders_sync", cwd=folder, code=1)

    errors = [line for line in failed.err.splitlines() if line.startswith("highmark: error:")]
    assert len(errors) == 1, str(failed)
    for fragment in ("orders_sync", "id 42", "UNIQUE", "on_bad_rows: quarantine"):
        assert fragment in errors[0], str(failed)
    assert errors[0].count("orders_sync") == 1, errors[0]
    assert "Traceback" not in failed.out + failed.err
    shown = hm("runs", "orders_sync", "--json", cwd=folder).json()
    assert shown[0]["error_details"]["bad_rows_count"] == 1
    assert shown[0]["rows_written"] == 59  # batches of 30: the run stops after the bad row's


def test_quarantine_then_list_and_retry(
    tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    folder = _folder(tmp_path, engine_for, on_bad_rows="quarantine")

    ran = hm("run", "orders_sync", cwd=folder)
    assert "1 rejected" in ran.out
    run = hm("runs", "orders_sync", "--json", cwd=folder).json()[0]
    assert (run["run_status"], run["rows_rejected"], run["rows_written"]) == ("success", 1, 99)
    assert any("quarantined" in n for n in run["notes"])
    status = hm("status", "--json", cwd=folder).json()
    assert status[0]["rows_rejected"] == 1
    assert "rows_rejected" in hm("status", cwd=folder).out

    listed = hm("rejected", "orders_sync", "--json", cwd=folder).json()
    assert [r["source_record_id"] for r in listed] == [42]
    assert listed[0]["source_data"]["customer"] == "customer 1"
    assert listed[0]["run_id"] == run["run_id"]
    assert "UNIQUE" in hm("rejected", "orders_sync", cwd=folder).out

    refused = hm("rejected", "retry", "orders_sync", cwd=folder, code=1)
    assert "0 rejected row(s) loaded, 1 refused again" in refused.out

    warehouse = engine_for(f"sqlite:///{folder / 'warehouse.db'}")
    with warehouse.begin() as conn:
        conn.execute(text("DROP INDEX uq_customer"))
    done = hm("rejected", "retry", "orders_sync", cwd=folder)
    assert "1 rejected row(s) loaded, 0 refused again" in done.out
    assert hm("rejected", "orders_sync", "--json", cwd=folder).json() == []
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM orders")).scalar_one() == 100

    unknown = hm("rejected", "nope", cwd=folder, code=2)
    assert_error(unknown, 2, "nope")
