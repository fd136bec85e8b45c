"""Bad rows on real SQLite, PostgreSQL and MariaDB: a batch the target refuses for one row's
values is bisected down to that row; the batch's other rows are written; the run fails naming the
row (``on_bad_rows: fail``) or quarantines it and succeeds (``quarantine``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Index, String, text

from highmark import Project, RunStatus
from highmark.destinations.rows import RowLoader
from tests.helpers import (
    BASE_TIME,
    copy_job,
    create_checked_orders,
    create_orders,
    insert_orders,
    order,
    orders_table,
    short_lock_timeout,
    snapshot,
)

JOB = "orders_sync"
ROWS = 10_000
BAD_ID = 4242


def _project(write_project: Callable[..., Path], url: str, **options: Any) -> Project:
    top = options.pop("top", {})
    path = write_project(control=url, connections={"db": url}, jobs={JOB: copy_job(**options)})
    if top:
        import yaml

        document = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**top, **document}, sort_keys=False))
    return Project.load(path)


def _source(engine: Engine, ids: range, bad: set[int]) -> list[dict[str, Any]]:
    table = create_orders(engine) if ids.start == 1 else orders_table()
    rows = [order(i, amount="-1.00" if i in bad else None) for i in ids]
    insert_orders(engine, table, rows)
    return rows


def test_one_bad_row_in_a_batch_of_10000_fails_the_run_after_the_9999_others_are_written(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    _source(engine, range(1, ROWS + 1), {BAD_ID})
    create_checked_orders(engine)
    project = _project(write_project, db_url)

    run = project.run(JOB)

    assert run.run_status is RunStatus.FAILED
    assert run.error_details is not None, run
    assert run.error_details["exception_type"] == "BadRowsError", run.error_details["stack"]
    assert run.error_message is not None and "\n" not in run.error_message
    assert f"id {BAD_ID}" in run.error_message
    assert run.error_message.count(JOB) <= 1
    details = run.error_details
    assert details is not None
    assert details["retryable"] is False
    assert details["bad_rows_count"] == 1
    assert details["source_record_id"] == BAD_ID
    assert Decimal(details["source_data"]["amount"]) == Decimal("-1")
    assert details["source_data"]["customer"] == f"customer {BAD_ID}"
    assert details["bad_rows"][0]["source_record_id"] == BAD_ID
    assert "Traceback" in details["stack"]
    if engine.dialect.name != "sqlite":  # SQLite names the constraint, not in its diagnostics
        assert details["constraint"] == "amount_not_negative"
    copied = [r["id"] for r in snapshot(engine, "orders_copy")]
    assert copied == [i for i in range(1, ROWS + 1) if i != BAD_ID]
    assert project.watermark(JOB) is None  # the mark stays: the bad row is not behind it

    # The next run meets the same row and fails the same way, writing nothing twice.
    again = project.run(JOB)
    assert again.run_status is RunStatus.FAILED
    assert again.error_details is not None and again.error_details["source_record_id"] == BAD_ID
    assert len(snapshot(engine, "orders_copy")) == ROWS - 1


def test_quarantine_keeps_bad_rows_apart_and_moves_the_watermark_past_them(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    _source(engine, range(1, 11), set())
    create_checked_orders(engine)
    # The default comes from the top of the project file.
    project = _project(write_project, db_url, top={"on_bad_rows": "quarantine"})
    assert project.config.jobs[JOB].on_bad_rows == "quarantine"  # type: ignore[attr-defined]
    assert project.run(JOB).run_status is RunStatus.SUCCESS

    # The next batch is merged into a non-empty target: bisected the same way.
    bad = {20, BAD_ID, ROWS}
    rows = _source(engine, range(11, ROWS + 1), bad)
    run = project.run(JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.rows_rejected == 3
    assert run.rows_read == ROWS - 10
    assert run.rows_written == ROWS - 10 - 3
    assert any("3 bad row(s) quarantined" in n for n in run.notes or [])
    copied = [r["id"] for r in snapshot(engine, "orders_copy")]
    assert copied == [i for i in range(1, ROWS + 1) if i not in bad]
    mark = project.watermark(JOB)
    assert (
        mark is not None and mark.watermark().ts == rows[-1]["updated_at"]
    )  # past the last (bad) row

    store = project.store
    rejected = store.rejected_rows(JOB)
    assert [r.source_record_id for r in rejected] == sorted(bad)
    assert all(r.run_id == run.run_id for r in rejected)
    assert rejected[0].source_data is not None
    assert Decimal(rejected[0].source_data["amount"]) == Decimal("-1")
    assert rejected[0].source_table == "orders"
    assert rejected[0].error_message

    # A later run that meets a rejected row again (it changed) replaces its entry.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE orders SET updated_at = :at WHERE id = 20"),
            {"at": _at(engine, BASE_TIME + timedelta(days=1))},
        )
    assert project.run(JOB).rows_rejected == 1
    assert sorted(r.source_record_id for r in store.rejected_rows(JOB)) == sorted(bad)


def test_rejected_retry_loads_the_rows_once_the_target_is_fixed(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    rows = [order(i) for i in range(1, 201)]
    for i in (50, 150):  # two customers that a unique index on the target refuses
        rows[i - 1]["customer"] = "customer 1"
    insert_orders(engine, table, rows)
    target = orders_table("orders_copy")
    Index("uq_orders_copy_customer", target.c.customer, unique=True)
    target.metadata.create_all(engine)
    project = _project(write_project, db_url, on_bad_rows="quarantine", batch_size=64)

    run = project.run(JOB)
    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.rows_rejected == 2
    assert len(snapshot(engine, "orders_copy")) == 198

    store = project.store
    still = project.retry_rejected(JOB)  # the target is not fixed yet: both stay
    assert (still.loaded, still.refused) == (0, 2)
    assert [r.retry_count for r in store.rejected_rows(JOB)] == [1, 1]

    drop = "DROP INDEX uq_orders_copy_customer"
    with engine.begin() as conn:
        conn.execute(text(drop + (" ON orders_copy" if engine.dialect.name == "mysql" else "")))
    done = project.retry_rejected(JOB)

    assert (done.loaded, done.refused) == (2, 0)
    assert store.rejected_rows(JOB) == []
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")


def _at(engine: Engine, value: Any) -> Any:
    return value if engine.dialect.name == "postgresql" else value.replace(tzinfo=None)


def test_an_unparsable_sqlite_timestamp_is_named_by_its_id(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    source_url = f"sqlite:///{tmp_path / 'shop.db'}"
    shop = engine_for(source_url)
    with shop.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE events (id INTEGER PRIMARY KEY, updated_at TEXT, shipped_at DATETIME)"
            )
        )
        for i in range(1, 21):
            shipped = "not a date" if i == 7 else f"2024-02-01 10:00:{i:02d}"
            # id 10's watermark is no timestamp (it sorts last, as text): read, and named.
            stamp = "2024-01-01 10:00:99" if i == 10 else f"2024-01-01 10:00:{i:02d}"
            conn.execute(
                text("INSERT INTO events VALUES (:i, :u, :s)"), {"i": i, "u": stamp, "s": shipped}
            )
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    events = {
        "load_type": "incremental",
        "source": {"connection": "shop", "table": "events"},
        "target": {"connection": "warehouse", "table": "events"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "batch_size": 5,
    }
    path = write_project(
        control=url, connections={"shop": source_url, "warehouse": url}, jobs={"events": events}
    )
    project = Project.load(path)

    failed = project.run("events")

    assert failed.run_status is RunStatus.FAILED
    assert failed.error_message is not None
    assert "id 7" in failed.error_message and "shipped_at" in failed.error_message
    assert "not a date" in failed.error_message
    assert "ValueError" not in failed.error_message
    details = failed.error_details
    assert details is not None
    assert (details["source_record_id"], details["column"]) == (7, "shipped_at")
    assert details["source_data"]["shipped_at"] == "not a date"
    warehouse = engine_for(url)
    with warehouse.connect() as conn:
        ids = conn.execute(text("SELECT id FROM events ORDER BY id")).scalars().all()
    assert ids == [1, 2, 3, 4, 5, 6, 8, 9, 11]  # id 7's batch (6-11) is written but for it

    events["on_bad_rows"] = "quarantine"
    path = write_project(
        control=url, connections={"shop": source_url, "warehouse": url}, jobs={"events": events}
    )
    project = Project.load(path)
    run = project.run("events")

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.rows_rejected == 2
    rejected = {r.source_record_id: r for r in project.store.rejected_rows("events")}
    assert sorted(rejected) == [7, 10]
    assert rejected[10].error_column == "updated_at"
    with warehouse.connect() as conn:
        ids = conn.execute(text("SELECT id FROM events ORDER BY id")).scalars().all()
    assert ids == [i for i in range(1, 21) if i not in (7, 10)]


def test_a_lock_timeout_during_a_batch_stays_retryable_and_is_not_bisected(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    short_lock_timeout(engine)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 11)])
    project = _project(write_project, pg_url, on_bad_rows="quarantine")
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    # Row 5 changes and new rows arrive, while another session holds row 5 of the target.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE orders SET amount = 99, updated_at = updated_at + interval '1 hour' "
                 "WHERE id = 5")
        )  # fmt: skip
    insert_orders(engine, table, [order(i, at=BASE_TIME + timedelta(hours=2)) for i in (11, 12)])
    holder = engine.connect()
    try:
        holder.execute(text("SELECT * FROM orders_copy WHERE id = 5 FOR UPDATE"))

        run = project.run(JOB)
    finally:
        holder.rollback()
        holder.close()

    assert run.run_status is RunStatus.FAILED
    assert run.error_details is not None
    assert run.error_details["retryable"] is True, run.error_message
    assert "lock" in (run.error_message or "")
    assert run.rows_rejected == 0 and project.store.rejected_rows(JOB) == []
    # Not bisected: nothing of the refused batch went in (rows 11 and 12 came with row 5).
    assert [r["id"] for r in snapshot(engine, "orders_copy")] == list(range(1, 11))
    assert project.run(JOB).run_status is RunStatus.SUCCESS  # once the lock is gone
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")


def test_a_run_that_quarantines_raises_one_rows_rejected_alert(
    tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    from tests.alerts.support import webhook_server
    from tests.alerts.support import write_project as write_alerting_project

    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine = engine_for(url)
    _source(engine, range(1, 101), {BAD_ID % 100})
    create_checked_orders(engine)
    with webhook_server() as hooks:
        path = write_alerting_project(
            tmp_path / "highmark.yml",
            url,
            jobs={JOB: copy_job(on_bad_rows="quarantine")},
            alerts=[{"type": "webhook", "url": hooks.url("all"), "events": ["rows_rejected"]}],
        )
        project = Project.load(path)
        run = project.run(JOB)
        assert run.rows_rejected == 1
        assert project.run(JOB).rows_rejected == 0  # nothing new: no alert

        (alert,) = hooks.bodies("/all/")
    assert (alert["event"], alert["run_id"], alert["rows_rejected"]) == (
        "rows_rejected", run.run_id, 1,
    )  # fmt: skip
    assert f"highmark rejected {JOB}" in alert["message"]


def test_retention_purges_quarantined_rows_with_their_run(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine = engine_for(url)
    _source(engine, range(1, 51), {7})
    create_checked_orders(engine)
    project = _project(write_project, url, on_bad_rows="quarantine")
    old = project.run(JOB)
    _source(engine, range(51, 61), {55})
    recent = project.run(JOB)
    assert (old.rows_rejected, recent.rows_rejected) == (1, 1)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE etl_job_runs SET started_at = '2020-01-01 00:00:00' WHERE run_id = :r"),
            {"r": old.run_id},
        )

    project.purge()

    assert [r.source_record_id for r in project.store.rejected_rows(JOB)] == [55]


def test_a_value_too_long_on_mariadb_strict_mode_is_a_bad_row(
    mysql_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """SQLite declares VARCHAR(20) but keeps a longer text: the MariaDB target made from that
    declaration (strict mode) refuses the row, which alone is quarantined."""
    source_url = f"sqlite:///{tmp_path / 'shop.db'}"
    source = engine_for(source_url)
    table = orders_table()
    table.c.customer.type = String(20)
    table.metadata.create_all(source)
    rows = [order(i) for i in range(1, 2001)]
    rows[776]["customer"] = "a customer name far longer than the declared twenty"
    insert_orders(source, table, rows)
    job = {
        **copy_job(on_bad_rows="quarantine"),
        "source": {"connection": "shop", "table": "orders"},
        "target": {"connection": "dw", "table": "orders_copy"},
    }
    path = write_project(
        control=mysql_url, connections={"shop": source_url, "dw": mysql_url}, jobs={JOB: job}
    )
    project = Project.load(path)

    run = project.run(JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    (rejected,) = project.store.rejected_rows(JOB)
    assert (rejected.source_record_id, rejected.error_column) == (777, "customer")
    assert "too long" in rejected.error_message
    assert len(snapshot(engine_for(mysql_url), "orders_copy")) == 1999


def test_a_parallel_first_load_bisects_the_range_that_holds_a_bad_row(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    _source(engine, range(1, 3001), {1234})
    create_checked_orders(engine)
    project = _project(
        write_project, pg_url, on_bad_rows="quarantine", parallelism=3, batch_size=500
    )

    run = project.run(JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.rows_rejected == 1
    assert [r.source_record_id for r in project.store.rejected_rows(JOB)] == [1234]
    copied = [r["id"] for r in snapshot(engine, "orders_copy")]
    assert copied == [i for i in range(1, 3001) if i != 1234]


def test_a_masked_value_that_cannot_be_read_is_hashed_never_shown(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """A masked column is hashed from its raw value when it cannot be read as its type: the
    row is no bad row, so the value it hides is in no rejected row, error or note."""
    source_url = f"sqlite:///{tmp_path / 'shop.db'}"
    with engine_for(source_url).begin() as conn:
        conn.execute(text("CREATE TABLE people (id INTEGER PRIMARY KEY, born DATETIME)"))
        conn.execute(text("INSERT INTO people VALUES (1, '1990-05-01 00:00:00'), (2, 'secret!')"))
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    job = {
        "load_type": "full",
        "source": {"connection": "shop", "table": "people"},
        "target": {"connection": "warehouse", "table": "people"},
        "primary_key": ["id"],
        "mask_columns": ["born"],
        "mask_key": "a-key-long-enough-for-hmac",
        "on_bad_rows": "quarantine",
    }
    path = write_project(
        control=url, connections={"shop": source_url, "warehouse": url}, jobs={"people": job}
    )
    project = Project.load(path)

    run = project.run("people")

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.rows_rejected == 0 and not project.store.rejected_rows("people")
    with engine_for(url).connect() as conn:
        hashed = dict(conn.execute(text("SELECT id, born FROM people")).all())
    assert len(hashed[2]) == 64 and "secret" not in str(hashed)
    assert "secret" not in f"{run.notes} {run.error_details}"


@pytest.mark.parametrize("target", ["sqlite", "mysql", "postgresql-rows"])
def test_a_postgresql_date_beyond_pythons_years_is_a_bad_row_named_by_its_id(
    target: str,
    pg_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A date before the year 1 or after 9999 (PostgreSQL holds both; Python neither) used to
    fail the whole read; it is now a bad row named by its id, on the fast paths (whose range is
    refused and read again as rows) and on the row path alike."""
    with engine_for(pg_url).begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE events (id bigint PRIMARY KEY, happened_at timestamptz, "
                "on_day date, updated_at timestamptz NOT NULL)"
            )
        )
        for i in range(1, 21):
            happened = {7: "0044-03-15 12:00:00+00 BC", 9: "10000-01-01 00:00:00+00"}
            day = {12: "12000-01-01", 14: "0044-03-15 BC"}.get(i, "2024-01-01")
            conn.execute(
                text(
                    "INSERT INTO events VALUES (:i, CAST(:h AS timestamptz), CAST(:d AS date), "
                    "'2024-01-01 00:00:00+00'::timestamptz + :i * interval '1 second')"
                ),
                {"i": i, "h": happened.get(i, "2024-02-01 10:00:00+00"), "d": day},
            )
    if target == "postgresql-rows":  # COPY keeps such values, PostgreSQL to PostgreSQL
        monkeypatch.setattr(RowLoader, "takes_copy_from", lambda self, dialect: False)
    url = _warehouse(target.removesuffix("-rows"), pg_url, request, tmp_path)
    project = _quarantining(write_project, pg_url, url, "events", batch_size=5)

    run = project.run("events")

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    rejected = {r.source_record_id: r for r in project.store.rejected_rows("events")}
    assert sorted(rejected) == [7, 9, 12, 14]  # 14: not read as the year 44 AD
    assert rejected[7].error_column == "happened_at" and "BC" in rejected[7].error_message
    assert rejected[12].error_column == rejected[14].error_column == "on_day"
    with engine_for(url).connect() as conn:
        ids = conn.execute(text("SELECT id FROM events_copy ORDER BY id")).scalars().all()
    assert ids == [i for i in range(1, 21) if i not in (7, 9, 12, 14)]


@pytest.mark.parametrize("target", ["sqlite", "mysql", "postgresql"])
def test_a_float_the_target_cannot_hold_is_a_bad_row_named_by_its_column(
    target: str,
    pg_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    """PostgreSQL's NaN and ±Infinity: SQLite stored NaN as NULL (silently) and keeps infinity;
    MySQL/MariaDB hold neither (PyMySQL failed every run). A value the target cannot hold is now
    a bad row, named by its row and column; PostgreSQL keeps them all."""
    values = {1: "NaN", 2: "Infinity", 3: "-Infinity", 4: "1.5"}
    with engine_for(pg_url).begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE floats (id bigint PRIMARY KEY, x double precision, "
                "updated_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00')"
            )
        )
        for i, x in values.items():
            conn.execute(
                text("INSERT INTO floats (id, x) VALUES (:i, CAST(:x AS float8))"), {"i": i, "x": x}
            )
    url = _warehouse(target, pg_url, request, tmp_path)
    project = _quarantining(write_project, pg_url, url, "floats")

    run = project.run("floats")

    assert run.run_status is RunStatus.SUCCESS, run.error_message
    refused = {"sqlite": [1], "mysql": [1, 2, 3], "postgresql": []}[target]
    rejected = project.store.rejected_rows("floats")
    assert sorted(r.source_record_id for r in rejected) == refused
    assert all(r.error_column == "x" and "no NaN" in r.error_message for r in rejected)
    with engine_for(url).connect() as conn:
        loaded = dict(conn.execute(text("SELECT id, x FROM floats_copy")).all())
    assert sorted(loaded) == [i for i in values if i not in refused]
    if target != "mysql":
        assert loaded[2] == float("inf") and loaded[3] == float("-inf")


def _warehouse(kind: str, pg_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A target database of ``kind``: PostgreSQL's is the source's own."""
    if kind == "postgresql":
        return pg_url
    if kind == "mysql":
        return str(request.getfixturevalue("mysql_url"))
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


def _quarantining(
    write_project: Callable[..., Path], source: str, target: str, table: str, **options: Any
) -> Project:
    """A project whose job ``table`` copies ``table`` into ``<table>_copy``, quarantining."""
    job = {
        **copy_job(on_bad_rows="quarantine", **options),
        "source": {"connection": "src", "table": table},
        "target": {"connection": "dst", "table": f"{table}_copy"},
    }
    return Project.load(
        write_project(connections={"src": source, "dst": target}, jobs={table: job})
    )
