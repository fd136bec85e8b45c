"""Bad rows of full loads on real SQLite, PostgreSQL and MariaDB: the staging table carries the
target's NOT NULL and CHECK constraints, so a row only they refuse is bisected out while it is
staged — named (``on_bad_rows: fail``, the target left as it was) or quarantined — instead of
failing the final merge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import CheckConstraint, Column, Engine, String, Table, text

from highmark import Project, RunStatus
from tests import helpers
from tests.integration.test_bad_rows import BAD_ID, JOB, ROWS


def _project(write_project: Callable[..., Path], url: str, **options: Any) -> Project:
    job = helpers.copy_job(load_type="full", **options)
    del job["watermark"]
    path = write_project(control=url, connections={"db": url}, jobs={JOB: job})
    return Project.load(path)


def _source(engine: Engine, bad: dict[str, Any], table: Table | None = None) -> None:
    """``ROWS`` orders; the one of id ``BAD_ID`` with the values ``bad``."""
    if table is None:
        table = helpers.create_orders(engine)
    else:
        table.metadata.create_all(engine)
    rows = [helpers.order(i) for i in range(1, ROWS + 1)]
    rows[BAD_ID - 1].update(bad)
    helpers.insert_orders(engine, table, rows)


def _ids(engine: Engine, name: str = "orders_copy") -> list[int]:
    return [r["id"] for r in helpers.snapshot(engine, name)]


def test_a_row_a_check_refuses_fails_the_full_load_by_its_id_and_leaves_the_target_as_it_was(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    _source(engine, {"amount": -1})
    helpers.create_checked_orders(engine)
    helpers.insert_orders(
        engine,
        helpers.orders_table("orders_copy"),
        [helpers.order(i, customer="old") for i in (1, 2)],
    )
    project = _project(write_project, db_url, batch_size=2_500)

    run = project.run(JOB)

    assert run.run_status is RunStatus.FAILED
    details = run.error_details
    assert details is not None and details["exception_type"] == "BadRowsError", details
    assert details["source_record_id"] == BAD_ID
    assert details["bad_rows_count"] == 1
    assert run.error_message is not None and f"id {BAD_ID}" in run.error_message
    assert "not replaced" in run.error_message
    if engine.dialect.name != "sqlite":  # SQLite names the constraint, not in its diagnostics
        assert details["constraint"] == "amount_not_negative"
    # Nothing is lost: the target keeps its old rows until a load stages every row.
    assert [r["customer"] for r in helpers.snapshot(engine, "orders_copy")] == ["old", "old"]

    with engine.begin() as conn:  # the source is fixed: the next run resumes the staging
        conn.execute(text(f"UPDATE orders SET amount = 1 WHERE id = {BAD_ID}"))
    again = project.run(JOB)

    assert again.run_status is RunStatus.SUCCESS, again.error_message
    assert again.rows_read < ROWS  # resumed after the batches staged before the bad row
    assert _ids(engine) == list(range(1, ROWS + 1))
    assert helpers.snapshot(engine, "orders_copy") == helpers.snapshot(engine, "orders")


def test_a_row_a_check_refuses_is_quarantined_and_retried_once_the_target_is_fixed(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    _source(engine, {"amount": -1})
    helpers.create_checked_orders(engine)
    project = _project(write_project, db_url, on_bad_rows="quarantine")

    run = project.run(JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.rows_rejected == 1
    assert run.rows_read == ROWS
    assert run.rows_written == ROWS - 1
    assert _ids(engine) == [i for i in range(1, ROWS + 1) if i != BAD_ID]
    rejected = project.store.rejected_rows(JOB)
    assert [r.source_record_id for r in rejected] == [BAD_ID]

    _drop_amount_check(engine)
    done = project.retry_rejected(JOB)

    assert (done.loaded, done.refused) == (1, 0)
    assert project.store.rejected_rows(JOB) == []
    assert helpers.snapshot(engine, "orders_copy") == helpers.snapshot(engine, "orders")


def test_a_row_not_null_refuses_is_quarantined_by_a_full_refresh(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    source = helpers.orders_table()
    source.c.customer.nullable = True
    _source(engine, {"customer": None}, source)
    helpers.create_orders(engine, "orders_copy")  # customer NOT NULL
    job = helpers.copy_job(on_bad_rows="quarantine")
    path = write_project(control=db_url, connections={"db": db_url}, jobs={JOB: job})
    project = Project.load(path)

    run = project.run(JOB, full_refresh=True)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.rows_rejected == 1
    assert _ids(engine) == [i for i in range(1, ROWS + 1) if i != BAD_ID]
    [rejected] = project.store.rejected_rows(JOB)
    assert rejected.source_record_id == BAD_ID
    assert rejected.error_column == "customer"


def test_target_columns_the_job_does_not_map_do_not_hold_the_staging_back(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """A target column the source lacks (NOT NULL with a default, in a CHECK of its own and in
    one with a mapped column) is left out of the stage with those CHECKs; the mapped columns'
    CHECK still refuses. The target's unique index and AUTO_INCREMENT / identity key stay out of
    the stage."""
    engine = engine_for(db_url)
    _source(engine, {"amount": -1})
    target = helpers.orders_table("orders_copy")
    target.append_column(Column("region", String(10), nullable=False, server_default="eu"))
    target.append_constraint(CheckConstraint("region <> ''", name="region_given"))
    target.append_constraint(CheckConstraint("region = 'eu' OR amount < 100", name="region_amount"))
    target.append_constraint(CheckConstraint("amount >= 0", name="amount_not_negative"))
    # Copied verbatim on SQLite: no ":noon" or "%" in it is taken for a parameter.
    target.append_constraint(CheckConstraint(r"customer NOT LIKE '% \:noon%'", name="no_noon"))
    target.metadata.create_all(engine)
    with engine.begin() as conn:  # a generated key and a unique index: not carried either
        conn.execute(text("CREATE UNIQUE INDEX uq_copy_customer ON orders_copy (customer)"))
        if engine.dialect.name == "mysql":
            conn.execute(text("ALTER TABLE orders_copy MODIFY id BIGINT NOT NULL AUTO_INCREMENT"))
        elif engine.dialect.name == "postgresql":
            conn.execute(
                text("ALTER TABLE orders_copy ALTER id ADD GENERATED BY DEFAULT AS IDENTITY")
            )
    project = _project(write_project, db_url, on_bad_rows="quarantine")

    run = project.run(JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert [r.source_record_id for r in project.store.rejected_rows(JOB)] == [BAD_ID]
    rows = helpers.snapshot(engine, "orders_copy")
    assert [r["id"] for r in rows] == [i for i in range(1, ROWS + 1) if i != BAD_ID]
    assert {r["region"] for r in rows} == {"eu"}


def _drop_amount_check(engine: Engine) -> None:
    """Fix the target: it takes negative amounts (SQLite rebuilds the table for that)."""
    with engine.begin() as conn:
        if engine.dialect.name != "sqlite":
            conn.execute(text("ALTER TABLE orders_copy DROP CONSTRAINT amount_not_negative"))
            return
        conn.execute(text("ALTER TABLE orders_copy RENAME TO orders_old"))
    helpers.orders_table("orders_copy").metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO orders_copy SELECT * FROM orders_old"))
        conn.execute(text("DROP TABLE orders_old"))
