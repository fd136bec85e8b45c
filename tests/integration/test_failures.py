"""Failed, refused and interrupted runs on real SQLite, PostgreSQL and MariaDB: the watermark
stays, the error is recorded, nothing is half-written, and an interrupted run resumes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    Numeric,
    String,
    Table,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine

from highmark import CancelToken, Counts, JobSpec, Project, RunRecord, RunStatus
from highmark import db as highmark_db
from highmark.destinations.sql import FULL_STAGE_PREFIX
from tests.helpers import (
    BASE_TIME,
    Timestamp,
    create_orders,
    delete_order,
    insert_orders,
    order,
    snapshot,
    update_order,
)

JOB = "orders_sync"
INCREMENTAL: dict[str, Any] = {
    "load_type": "incremental",
    "source": {"connection": "db", "table": "orders"},
    "target": {"connection": "db", "table": "orders_copy"},
    "primary_key": ["id"],
    "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
    "soft_delete": {"column": "deleted_at", "mode": "mark"},
    "batch_size": 3,
}


def _project(write_project: Callable[..., Path], url: str, **job: object) -> Project:
    spec = {**INCREMENTAL, **job}
    path = write_project(control=url, connections={"db": url}, jobs={JOB: spec})
    return Project.load(path)


def _count(engine: Engine, name: str) -> int:
    table = Table(name, MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _assert_recorded_failure(run: RunRecord, *, retryable: bool) -> None:
    assert run.run_status is RunStatus.FAILED
    assert run.error_message
    assert "\n" not in run.error_message
    details = run.error_details
    assert details is not None
    assert details["exception_type"]
    assert details["message"] == run.error_message
    assert "Traceback" in details["stack"]
    assert details["retryable"] is retryable


# ---------------------------------------------------------------------------- failed runs


def test_failed_run_keeps_the_watermark_when_the_source_is_gone(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 6)])
    project = _project(write_project, db_url)
    first = project.run(JOB)
    assert first.run_status is RunStatus.SUCCESS, first.error_message
    mark = project.watermark(JOB)
    assert mark is not None

    table.drop(engine)
    failed = project.run(JOB)

    _assert_recorded_failure(failed, retryable=False)
    assert failed.error_details is not None
    assert failed.error_details["exception_type"] == "SourceError"
    assert "orders" in failed.error_message  # type: ignore[operator]
    assert project.watermark(JOB) == mark
    assert failed.watermark_start == first.watermark_end
    assert failed.watermark_end is None
    assert len(snapshot(engine, "orders_copy")) == 5


def test_failed_run_keeps_the_watermark_when_the_target_conflicts(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 6)])
    project = _project(write_project, db_url)
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    mark = project.watermark(JOB)

    # The target is rebuilt by someone else with an incompatible column, and new rows arrive.
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE orders_copy"))
    Table(
        "orders_copy",
        MetaData(),
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("customer", String(100)),
        Column("amount", Timestamp),
        Column("updated_at", Timestamp),
        Column("deleted_at", Timestamp),
    ).create(engine)
    insert_orders(engine, table, [order(6, at=BASE_TIME + timedelta(hours=1))])

    failed = project.run(JOB)

    _assert_recorded_failure(failed, retryable=False)
    assert failed.error_details is not None
    assert failed.error_details["exception_type"] == "SchemaConflictError"
    assert "amount" in failed.error_message  # type: ignore[operator]
    assert project.watermark(JOB) == mark
    assert (failed.rows_read, failed.rows_written) == (0, 0)


# ---------------------------------------------------------------------------- refused targets


CONFLICTS = {
    # kind: what the error message must say
    "amount_timestamp": "column amount is",
    "missing_column": "column customer is missing",
    "no_key": "no primary key or unique index on (id)",
}


def _conflicting_target(kind: str) -> Table:
    columns: list[Column[Any]] = [
        Column("id", BigInteger, primary_key=kind != "no_key", autoincrement=False),
        Column("customer", String(100)),
        Column("amount", Timestamp if kind == "amount_timestamp" else Numeric(12, 2)),
        Column("updated_at", Timestamp),
        Column("deleted_at", Timestamp),
    ]
    if kind == "missing_column":
        columns = [c for c in columns if c.name != "customer"]
    return Table(f"copy_{kind}", MetaData(), *columns)


def test_conflicting_target_is_refused_before_anything_is_written(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 6)])
    for kind in CONFLICTS:
        target = _conflicting_target(kind)
        target.create(engine)
        with engine.begin() as conn:
            values: dict[str, Any] = {"id": 100}
            if kind != "missing_column":
                values["customer"] = "already there"
            conn.execute(target.insert(), [values])
    path = write_project(
        control=db_url,
        connections={"db": db_url},
        jobs={
            kind: {
                **INCREMENTAL,
                "target": {"connection": "db", "table": f"copy_{kind}"},
                # (evolve, the default, would add the missing column)
                **({"schema_changes": "freeze"} if kind == "missing_column" else {}),
            }
            for kind in CONFLICTS
        },
    )
    project = Project.load(path)

    for kind, expected in CONFLICTS.items():
        run = project.run(kind)

        _assert_recorded_failure(run, retryable=False)
        assert run.error_details is not None
        assert run.error_details["exception_type"] == "SchemaConflictError"
        message = run.error_message or ""
        assert expected in message, kind
        assert "nothing was written" in message
        assert _count(engine, f"copy_{kind}") == 1, kind
        assert project.watermark(kind) is None
        assert project.checkpoint(kind) is None


MISSING = {
    # job: (its settings, the key the message must name, the column)
    "bad_key": ({"primary_key": ["order_no"]}, "primary_key", "order_no"),
    "bad_watermark": (
        {"watermark": {"column": "changed_at", "type": "timestamp", "tiebreaker": "id"}},
        "watermark.column",
        "changed_at",
    ),
    "bad_tiebreaker": (
        {"watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "seq"}},
        "watermark.tiebreaker",
        "seq",
    ),
}


def test_missing_source_column_names_job_and_key(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(1)])
    path = write_project(
        control=db_url,
        connections={"db": db_url},
        jobs={job: {**INCREMENTAL, **settings} for job, (settings, _, _) in MISSING.items()},
    )
    project = Project.load(path)

    for job, (_, key, column) in MISSING.items():
        run = project.run(job)

        _assert_recorded_failure(run, retryable=False)
        message = run.error_message or ""
        # The run's row names the job; its message does not name it again ("X: job X: …").
        assert run.job_id == job
        assert job not in message
        assert key in message
        assert repr(column) in message
    assert not inspect(engine).has_table("orders_copy")


# ---------------------------------------------------------------------------- interruptions


class _Interrupter:
    """Cancels the run after ``after`` batches; records the checkpoint seen at each batch."""

    def __init__(self, project: Project, after: int | None) -> None:
        self.project = project
        self.after = after
        self.token = CancelToken()
        self.run_id: int | None = None
        self.checkpoints: list[dict[str, Any] | None] = []

    def started(self, job: JobSpec, run_id: int, description: str) -> None:
        self.run_id = run_id

    def progressed(self, counts: Counts, batch_number: int, detail: str | None = None) -> None:
        # The checkpoint of the batch before this one (each is saved after its batch is written).
        self.checkpoints.append(self.project.checkpoint(JOB))
        if self.after is not None and batch_number == self.after:
            self.token.cancel("stopped by the test")

    def finished(self, run: RunRecord) -> None:
        pass

    def own_checkpoints(self) -> list[dict[str, Any]]:
        return [c for c in self.checkpoints if c is not None and c["run_id"] == self.run_id]


def test_interrupted_incremental_run_resumes_from_its_checkpoint(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    # Rows 4-8 share a timestamp: the interruption after batch 2 (row 6) cuts the tie.
    tied = BASE_TIME + timedelta(seconds=4)
    rows = [order(i, at=tied if 4 <= i <= 8 else None) for i in range(1, 12)]
    insert_orders(engine, table, rows)
    project = _project(write_project, db_url)

    interrupter = _Interrupter(project, after=2)
    cancelled = project.run(JOB, observer=interrupter, cancel=interrupter.token)

    assert cancelled.run_status is RunStatus.CANCELLED, cancelled.error_message
    assert cancelled.error_details is not None
    assert cancelled.error_details["reason"] == "cancelled"
    assert (cancelled.rows_read, cancelled.rows_written) == (6, 6)
    assert project.watermark(JOB) is None
    checkpoint = project.checkpoint(JOB)
    assert checkpoint is not None
    assert checkpoint["run_id"] == cancelled.run_id
    assert checkpoint["mode"] == "incremental"
    assert checkpoint["batch_number"] == 2
    assert checkpoint["total_rows_processed"] == 6
    assert checkpoint["recovery_mode"] is False
    assert checkpoint["last_value_integer"] == 6
    assert _instant(checkpoint["last_value_timestamp"]) == tied
    assert [r["id"] for r in snapshot(engine, "orders_copy")] == list(range(1, 7))

    watcher = _Interrupter(project, after=None)
    resumed = project.run(JOB, observer=watcher)

    assert resumed.run_status is RunStatus.SUCCESS, resumed.error_message
    assert (resumed.rows_read, resumed.rows_written, resumed.rows_updated) == (11 - 6, 5, 0)
    own = watcher.own_checkpoints()
    assert own, "the resumed run saved no checkpoint before its last batch"
    assert all(c["recovery_mode"] is True for c in own)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    assert project.checkpoint(JOB) is None
    mark = project.watermark(JOB)
    assert mark is not None and mark.last_value_integer == 11
    assert mark.last_successful_run_id == resumed.run_id


def test_interrupted_full_load_resumes_staging(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(db_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 8)])
    project = _project(write_project, db_url, load_type="full", watermark=None, soft_delete=None)
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    before = snapshot(engine, "orders_copy")

    update_order(engine, table, 2, amount="50.00")
    update_order(engine, table, 6, customer="changed")
    delete_order(engine, table, 3)
    insert_orders(engine, table, [order(i) for i in range(8, 13)])

    interrupter = _Interrupter(project, after=2)
    cancelled = project.run(JOB, observer=interrupter, cancel=interrupter.token)

    assert cancelled.run_status is RunStatus.CANCELLED, cancelled.error_message
    assert cancelled.rows_read == 6
    checkpoint = project.checkpoint(JOB)
    assert checkpoint is not None
    assert checkpoint["mode"] == "full"
    assert checkpoint["batch_number"] == 2
    assert checkpoint["total_rows_processed"] == 6
    assert checkpoint["recovery_mode"] is False
    assert checkpoint["last_pk"] == [7]  # ids 1, 2, 4 | 5, 6, 7
    assert snapshot(engine, "orders_copy") == before  # the target is untouched
    stage = (FULL_STAGE_PREFIX + JOB)[:60]
    assert _count(engine, stage) == 6

    watcher = _Interrupter(project, after=None)
    resumed = project.run(JOB, observer=watcher)

    assert resumed.run_status is RunStatus.SUCCESS, resumed.error_message
    # 11 source rows, 6 staged before: only the other 5 are read again.
    assert resumed.rows_read == 11 - 6
    assert (resumed.rows_written, resumed.rows_updated, resumed.rows_deleted) == (5, 2, 1)
    own = watcher.own_checkpoints()
    assert own and all(c["recovery_mode"] is True for c in own)
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    assert project.checkpoint(JOB) is None
    assert not inspect(engine).has_table(stage)


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.parametrize("load_type", ["incremental", "full"])
def test_sqlite_source_and_target_in_one_file(
    load_type: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(highmark_db, "SQLITE_BUSY_TIMEOUT_SECONDS", 1)  # fail fast, not in 60 s
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine = engine_for(url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 8)])
    path = write_project(
        control=f"sqlite:///{tmp_path / 'control.db'}",  # elsewhere: data.db stays out of WAL
        connections={"db": url},
        jobs={JOB: {**INCREMENTAL, "load_type": load_type}},
    )

    run = Project.load(path).run(JOB)

    assert run.run_status is RunStatus.SUCCESS, run.error_message
