"""ControlStore on real SQLite, PostgreSQL and MariaDB: jobs, runs, watermarks, reports."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from highmark.config import normalize_url
from highmark.errors import LeaseLostError, StoreError
from highmark.models import Counts, MarkUpdate, RunRecord, RunStatus, Watermark, WatermarkType
from highmark.redact import MASK, register_secret
from highmark.store.store import MAX_ERROR_MESSAGE_LENGTH, ControlStore, JobDefinition, RunHandle
from highmark.store.tables import etl_job_runs, etl_jobs

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> ControlStore:
    return ControlStore.open(normalize_url(db_url, tmp_path))


def job(job_id: str, **changes: Any) -> JobDefinition:
    base = JobDefinition(
        job_id=job_id,
        job_name=f"{job_id} job",
        description="copies orders",
        source_table="orders",
        target_table="orders_copy",
        load_type="incremental",
        schedule="0 * * * *",
        is_active=True,
        timeout_seconds=3600,
        retry_count=3,
        definition={"batch_size": 100, "watermark": {"column": "updated_at", "type": "timestamp"}},
    )
    return dataclasses.replace(base, **changes)


def start(store: ControlStore, job_id: str, mark: Watermark | None = None) -> RunHandle:
    handle = store.start_run(
        job_id, triggered_by="manual", host="test-host", pid=os.getpid(), watermark_start=mark
    )
    assert handle is not None
    return handle


def ts_mark(ts: datetime, tiebreaker: int | None = None) -> Watermark:
    return Watermark(WatermarkType.TIMESTAMP, ts=ts, id=tiebreaker)


def succeed(
    store: ControlStore, handle: RunHandle, mark: Watermark | None, counts: Counts | None = None
) -> RunRecord:
    return store.finish_success(
        handle,
        counts or Counts(),
        marks=[] if mark is None else [MarkUpdate("orders", "updated_at", mark)],
        mark_tables=["orders"],
    )


def fail(store: ControlStore, handle: RunHandle, message: str = "boom") -> RunRecord:
    return store.finish_failed(
        handle,
        status=RunStatus.FAILED,
        error_message=message,
        error_details={"retryable": False},
        counts=Counts(rows_read=1),
    )


def row(store: ControlStore, table: Any, **key: Any) -> dict[str, Any] | None:
    """A control-table row exactly as stored (including columns the records leave out)."""
    query = select(table).where(*(table.c[k] == v for k, v in key.items()))
    with store.engine.connect() as connection:
        found = connection.execute(query).first()
    return dict(found._mapping) if found else None


def set_column(store: ControlStore, table: Any, values: dict[str, Any], **key: Any) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            update(table).where(*(table.c[k] == v for k, v in key.items())).values(**values)
        )


# --------------------------------------------------------------------------------------- jobs


def test_sync_inserts_jobs(store: ControlStore) -> None:
    store.sync_jobs([job("a"), job("b", is_active=False, schedule=None, description=None)])

    a, b = store.list_jobs()
    assert (a.job_id, a.job_name, a.load_type, a.schedule, a.is_active) == (
        "a",
        "a job",
        "incremental",
        "0 * * * *",
        True,
    )
    assert (a.source_table, a.target_table, a.timeout_seconds, a.retry_count) == (
        "orders",
        "orders_copy",
        3600,
        3,
    )
    assert a.description == "copies orders" and a.checkpoint_data is None
    assert a.created_at is not None and a.created_at == a.updated_at
    assert (b.job_id, b.is_active, b.schedule, b.description) == ("b", False, None, None)
    assert [j.job_id for j in store.list_jobs(active_only=True)] == ["a"]
    stored = row(store, etl_jobs, job_id="a")
    assert stored is not None and stored["definition"] == job("a").definition


def test_sync_updates_changed_jobs_and_leaves_unchanged_ones_alone(store: ControlStore) -> None:
    store.sync_jobs([job("renamed"), job("redefined"), job("same")])
    created = {j.job_id: j.created_at for j in store.list_jobs()}
    for job_id in created:
        set_column(store, etl_jobs, {"updated_at": LONG_AGO}, job_id=job_id)

    new_definition = {"batch_size": 500, "watermark": {"column": "updated_at", "type": "timestamp"}}
    store.sync_jobs(
        [
            job("renamed", job_name="Renamed", timeout_seconds=60),
            job("redefined", definition=new_definition),
            job("same"),
        ]
    )

    jobs = {j.job_id: j for j in store.list_jobs()}
    assert (jobs["renamed"].job_name, jobs["renamed"].timeout_seconds) == ("Renamed", 60)
    stored = row(store, etl_jobs, job_id="redefined")
    assert stored is not None and stored["definition"] == new_definition
    for job_id in ("renamed", "redefined"):
        updated = jobs[job_id].updated_at
        assert updated is not None and updated > LONG_AGO, job_id
        assert jobs[job_id].created_at == created[job_id]
    assert jobs["same"].updated_at == LONG_AGO
    assert jobs["same"].created_at == created["same"]


def test_sync_deactivates_jobs_no_longer_defined_and_keeps_their_history(
    store: ControlStore,
) -> None:
    store.sync_jobs([job("gone"), job("kept")])
    first = succeed(store, start(store, "gone"), ts_mark(T0))
    second = fail(store, start(store, "gone"))
    succeed(store, start(store, "kept"), None)
    set_column(store, etl_jobs, {"updated_at": LONG_AGO}, job_id="gone")

    store.sync_jobs([job("kept")])

    gone = store.get_job("gone")
    assert gone.is_active is False
    assert gone.updated_at is not None and gone.updated_at > LONG_AGO
    assert [j.job_id for j in store.list_jobs(active_only=True)] == ["kept"]
    assert [r.run_id for r in store.list_runs(job_id="gone")] == [second.run_id, first.run_id]
    mark = store.get_watermark("gone")
    assert mark is not None and mark.watermark() == ts_mark(T0)
    assert mark.last_successful_run_id == first.run_id

    # Syncing again leaves the inactive job alone; defining it again reactivates it.
    set_column(store, etl_jobs, {"updated_at": LONG_AGO}, job_id="gone")
    store.sync_jobs([job("kept")])
    assert store.get_job("gone").updated_at == LONG_AGO
    store.sync_jobs([job("kept"), job("gone")])
    assert store.get_job("gone").is_active is True
    assert store.get_watermark("gone") == mark


# --------------------------------------------------------------------------------------- runs


def test_start_run_refuses_a_second_live_run_of_a_job(store: ControlStore) -> None:
    store.sync_jobs([job("a"), job("b")])
    first = start(store, "a", ts_mark(T0, 7))

    assert (
        store.start_run("a", triggered_by="manual", host="h", pid=1, watermark_start=None) is None
    )
    other_job = start(store, "b")  # other jobs are not affected
    live = store.live_run("a")
    assert live is not None and live.run_id == first.run_id
    assert live.run_status is RunStatus.RUNNING
    assert (live.watermark_start, live.watermark_start_integer) == (T0, 7)
    assert (live.host, live.pid, live.triggered_by) == ("test-host", os.getpid(), "manual")
    assert len(store.list_runs(job_id="a")) == 1

    succeed(store, first, None)
    assert store.live_run("a") is None
    again = start(store, "a")
    assert again.run_id not in (first.run_id, other_job.run_id)


def test_start_run_of_an_unknown_job_is_an_error(store: ControlStore) -> None:
    with pytest.raises(StoreError, match="cannot start a run"):
        store.start_run("nobody", triggered_by="manual", host="h", pid=1, watermark_start=None)


_START_FROM_ANOTHER_PROCESS = """
import sys
from sqlalchemy.engine import make_url
from highmark.store.store import ControlStore
store = ControlStore.open(make_url(sys.argv[1]))
handle = store.start_run(
    sys.argv[2], triggered_by="manual", host="other-host", pid=2, watermark_start=None
)
print("refused" if handle is None else f"started {handle.run_id}")
"""


def test_start_run_refuses_a_live_run_from_another_process(
    store: ControlStore, db_url: str, tmp_path: Path
) -> None:
    store.sync_jobs([job("a")])
    handle = start(store, "a")
    url = normalize_url(db_url, tmp_path).render_as_string(hide_password=False)

    def start_elsewhere() -> str:
        result = subprocess.run(
            [sys.executable, "-c", _START_FROM_ANOTHER_PROCESS, url, "a"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert start_elsewhere() == "refused"
    succeed(store, handle, None)
    started = start_elsewhere()
    assert started.startswith("started ")
    live = store.live_run("a")
    assert live is not None and live.host == "other-host"
    assert started == f"started {live.run_id}"


WATERMARK_PAIRS = {
    "timestamp": (ts_mark(T0), ts_mark(T0 - timedelta(microseconds=1))),
    "timestamp+tiebreaker": (ts_mark(T0, 10), ts_mark(T0, 9)),
    "integer": (
        Watermark(WatermarkType.INTEGER, id=2**62),
        Watermark(WatermarkType.INTEGER, id=2**62 - 1),
    ),
}


@pytest.mark.parametrize("kind", list(WATERMARK_PAIRS))
def test_finish_success_moves_the_watermark_only_forward(store: ControlStore, kind: str) -> None:
    newer, older = WATERMARK_PAIRS[kind]
    store.sync_jobs([job("a")])
    first_handle = start(store, "a")
    store.save_checkpoint(first_handle, {"page": 3}, Counts(rows_read=3))
    first = succeed(store, first_handle, newer, Counts(10, 7, 2, 1))

    assert first.run_status is RunStatus.SUCCESS and first.finished_at is not None
    assert (first.rows_read, first.rows_written, first.rows_updated, first.rows_deleted) == (
        10,
        7,
        2,
        1,
    )
    assert (first.watermark_end, first.watermark_end_integer) == (newer.ts, newer.id)
    assert first.duration_seconds is not None and first.duration_seconds >= 0
    stored_run = row(store, etl_job_runs, run_id=first.run_id)
    assert stored_run is not None and stored_run["live_job_id"] is None
    assert store.get_checkpoint("a") is None
    mark = store.get_watermark("a")
    assert mark is not None and mark.watermark() == newer
    assert (mark.last_successful_run_id, mark.source_table, mark.watermark_column) == (
        first.run_id,
        "orders",
        "updated_at",
    )
    assert mark.watermark_type == newer.type.value

    # A later run that ends with an older watermark leaves the committed one where it was.
    second_handle = start(store, "a", newer)
    store.save_checkpoint(second_handle, {"page": 1}, Counts())
    second = succeed(store, second_handle, older)

    assert second.run_status is RunStatus.SUCCESS
    assert store.get_watermark("a") == mark
    assert (second.watermark_end, second.watermark_end_integer) == (newer.ts, newer.id)
    assert store.get_checkpoint("a") is None
    stored_run = row(store, etl_job_runs, run_id=second.run_id)
    assert stored_run is not None and stored_run["live_job_id"] is None


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.CANCELLED])
def test_finish_failed_keeps_the_watermark_and_the_checkpoint(
    store: ControlStore, status: RunStatus
) -> None:
    store.sync_jobs([job("a")])
    succeed(store, start(store, "a"), ts_mark(T0))
    committed = store.get_watermark("a")
    handle = start(store, "a", ts_mark(T0))
    checkpoint = {"last_pk": [41], "max_key": {"timestamp": "2024-01-02T00:00:00Z"}, "batch": 4}
    store.save_checkpoint(handle, checkpoint, Counts(rows_read=400, rows_written=400))

    run = store.finish_failed(
        handle,
        status=status,
        error_message="target refused the batch",
        error_details={"retryable": True, "phase": "writing", "batch_number": 5},
        counts=Counts(rows_read=450, rows_written=400),
    )

    assert run.run_status is status and run.finished_at is not None
    assert run.error_message == "target refused the batch"
    assert run.error_details == {"retryable": True, "phase": "writing", "batch_number": 5}
    assert (run.rows_read, run.rows_written) == (450, 400)
    assert (run.watermark_end, run.watermark_end_integer) == (None, None)
    assert store.get_watermark("a") == committed
    assert store.get_checkpoint("a") == checkpoint
    assert store.live_run("a") is None
    stored_run = row(store, etl_job_runs, run_id=run.run_id)
    assert stored_run is not None and stored_run["live_job_id"] is None


def test_a_run_taken_away_from_its_owner_cannot_be_written_by_it(store: ControlStore) -> None:
    store.sync_jobs([job("a")])
    succeed(store, start(store, "a"), ts_mark(T0))
    handle = start(store, "a", ts_mark(T0))
    store.save_checkpoint(handle, {"page": 1}, Counts(rows_read=5))
    store.heartbeat(handle, Counts(rows_read=6))
    live = store.live_run("a")
    assert live is not None and live.rows_read == 6

    assert store.abandon_run(live, "abandoned: no heartbeat for 900s") is True
    abandoned = row(store, etl_job_runs, run_id=handle.run_id)
    assert abandoned is not None
    assert (abandoned["run_status"], abandoned["live_job_id"]) == ("failed", None)
    assert abandoned["error_message"] == "abandoned: no heartbeat for 900s"
    assert abandoned["error_details"]["reason"] == "abandoned"
    job_row, mark = row(store, etl_jobs, job_id="a"), store.get_watermark("a")

    attempts: dict[str, Callable[[], object]] = {
        "heartbeat": lambda: store.heartbeat(handle, Counts(rows_read=99)),
        "save_checkpoint": lambda: store.save_checkpoint(handle, {"page": 2}, Counts(99)),
        "set_upper_bound": lambda: store.set_upper_bound(handle, "x", "y"),
        "finish_success": lambda: succeed(store, handle, ts_mark(T0 + timedelta(days=1))),
        "finish_failed": lambda: fail(store, handle, "late"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(LeaseLostError, match=f"run {handle.run_id} is no longer owned"):
            attempt()
        assert row(store, etl_job_runs, run_id=handle.run_id) == abandoned, name
        assert row(store, etl_jobs, job_id="a") == job_row, name
        assert store.get_watermark("a") == mark, name
    assert store.get_checkpoint("a") == {"page": 1}

    # Abandoning it again changes nothing; a new run of the job is unaffected by the old owner.
    assert store.abandon_run(live, "again") is False
    successor = start(store, "a")
    assert store.abandon_run(live, "stale record") is False
    with pytest.raises(LeaseLostError):
        store.heartbeat(handle)
    store.heartbeat(successor)
    # Even with the run's id, a handle with another owner's token is refused.
    impostor = dataclasses.replace(successor, owner_token=uuid.uuid4().hex)
    with pytest.raises(LeaseLostError):
        fail(store, impostor)
    current = store.live_run("a")
    assert current is not None and current.run_id == successor.run_id
    assert current.run_status is RunStatus.RUNNING


def test_error_message_and_details_are_scrubbed_of_secrets(store: ControlStore) -> None:
    secret = f"pw/{uuid.uuid4().hex[:8]}!"  # its URL-encoded forms are secrets too
    register_secret(secret)
    encoded = secret.replace("/", "%2F").replace("!", "%21")
    store.sync_jobs([job("a")])

    run = store.finish_failed(
        start(store, "a"),
        status=RunStatus.FAILED,
        error_message=f"cannot connect to postgresql://etl:{encoded}@db/warehouse ({secret})",
        error_details={
            "message": f"password={secret}",
            "context": {"attempts": [f"user:{secret}@db", 3, None]},
            "stack": f"Traceback...\n  url = 'mysql://etl:{encoded}@db'\n",
        },
        counts=Counts(),
    )

    stored = row(store, etl_job_runs, run_id=run.run_id)
    assert stored is not None
    for value in (stored["error_message"], json.dumps(stored["error_details"])):
        assert secret not in value and encoded not in value
        assert MASK in value
    assert (
        stored["error_message"]
        == f"cannot connect to postgresql://etl:{MASK}@db/warehouse ({MASK})"
    )
    assert stored["error_details"]["context"] == {"attempts": [f"user:{MASK}@db", 3, None]}


def test_a_long_error_message_is_clipped(store: ControlStore) -> None:
    store.sync_jobs([job("a")])
    run = fail(store, start(store, "a"), "x" * (MAX_ERROR_MESSAGE_LENGTH * 3))
    assert run.error_message == "x" * MAX_ERROR_MESSAGE_LENGTH + "…"


def test_secrets_inside_tuples_in_error_details_are_scrubbed(store: ControlStore) -> None:
    secret = f"tuple-{uuid.uuid4().hex[:8]}"
    register_secret(secret)
    store.sync_jobs([job("a")])
    run = store.finish_failed(
        start(store, "a"),
        status=RunStatus.FAILED,
        error_message="boom",
        error_details={"args": (f"password={secret}",)},
        counts=Counts(),
    )
    stored = row(store, etl_job_runs, run_id=run.run_id)
    assert stored is not None
    assert secret not in json.dumps(stored["error_details"])


# ------------------------------------------------------------------------------------- reports

# The reference's "latest job status" query (shared/reference/000, section 4), plus r.run_id.
REFERENCE_LATEST_STATUS = """
SELECT
    j.job_id, j.job_name, j.load_type, r.run_id,
    r.run_status, r.started_at, r.finished_at,
    r.rows_written, r.error_message
FROM etl_jobs j
LEFT JOIN (
    SELECT * FROM etl_job_runs r1
    WHERE started_at = (
        SELECT MAX(started_at) FROM etl_job_runs r2
        WHERE r2.job_id = r1.job_id
    )
) r ON j.job_id = r.job_id
WHERE j.is_active = TRUE
"""


def _space_out_started_at(store: ControlStore) -> None:
    """Give runs distinct start times in run_id order (the store's clock may tick in ms)."""
    with store.engine.connect() as connection:
        run_ids = list(connection.execute(select(etl_job_runs.c.run_id)).scalars())
    for run_id in run_ids:
        started = T0 + timedelta(minutes=run_id)
        set_column(store, etl_job_runs, {"started_at": started}, run_id=run_id)


def test_latest_status_follows_the_reference_query(store: ControlStore) -> None:
    store.sync_jobs([job(j) for j in ("failing", "never_run", "retired", "running", "fine")])
    succeed(store, start(store, "failing"), ts_mark(T0))
    failed = fail(store, start(store, "failing"), "disk full")
    fail(store, start(store, "retired"))
    fail(store, start(store, "fine"))
    fine = succeed(store, start(store, "fine"), ts_mark(T0), Counts(5, 5))
    succeed(store, start(store, "running"), None)
    running = start(store, "running")
    store.sync_jobs([job(j) for j in ("failing", "never_run", "running", "fine")])
    _space_out_started_at(store)

    status = store.latest_status()

    assert [(j.job_id, r.run_id if r else None) for j, r in status] == [
        ("failing", failed.run_id),
        ("fine", fine.run_id),
        ("never_run", None),
        ("running", running.run_id),
    ]
    by_job = {j.job_id: r for j, r in status}
    assert by_job["failing"] is not None and by_job["failing"].error_message == "disk full"
    assert by_job["fine"] is not None and by_job["fine"].rows_written == 5
    assert by_job["running"] is not None and by_job["running"].run_status is RunStatus.RUNNING
    with store.engine.connect() as connection:
        reference = {
            r.job_id: (r.run_id, r.run_status, r.rows_written, r.error_message)
            for r in connection.execute(text(REFERENCE_LATEST_STATUS))
        }
    assert reference == {
        job.job_id: (
            (run.run_id, run.run_status.value, run.rows_written, run.error_message)
            if run
            else (None, None, None, None)
        )
        for job, run in status
    }


def test_latest_status_gives_one_run_per_job_when_start_times_tie(store: ControlStore) -> None:
    # The reference query would list both runs; the store picks the later one (higher run_id).
    store.sync_jobs([job("a")])
    first = succeed(store, start(store, "a"), None)
    second = fail(store, start(store, "a"))
    for run in (first, second):
        set_column(store, etl_job_runs, {"started_at": T0}, run_id=run.run_id)

    [(_, latest)] = store.latest_status()
    assert latest is not None and latest.run_id == second.run_id


def test_list_runs_filters_and_orders_newest_first(store: ControlStore) -> None:
    store.sync_jobs([job("a"), job("b")])
    # run_ids in order: a success, b failed, a failed, b success, a failed, a running
    runs = [
        succeed(store, start(store, "a"), None).run_id,
        fail(store, start(store, "b")).run_id,
        fail(store, start(store, "a")).run_id,
        succeed(store, start(store, "b"), None).run_id,
        fail(store, start(store, "a")).run_id,
        start(store, "a").run_id,
    ]
    _space_out_started_at(store)
    newest_first = runs[::-1]

    def ids(**filters: Any) -> list[int]:
        return [r.run_id for r in store.list_runs(**filters)]

    assert ids(limit=None) == newest_first
    assert ids(job_id="a") == [runs[5], runs[4], runs[2], runs[0]]
    assert ids(status=RunStatus.FAILED) == [runs[4], runs[2], runs[1]]
    assert ids(status=RunStatus.RUNNING) == [runs[5]]
    assert ids(job_id="b", status=RunStatus.SUCCESS) == [runs[3]]
    assert ids(limit=2) == newest_first[:2]
    assert ids(job_id="a", status=RunStatus.FAILED, limit=1) == [runs[4]]
    # since is inclusive, and any timezone names the same instant.
    since = (T0 + timedelta(minutes=runs[2])).astimezone(timezone(timedelta(hours=2)))
    assert ids(since=since) == [r for r in newest_first if r >= runs[2]]
    assert ids(since=since, status=RunStatus.FAILED, job_id="a") == [runs[4], runs[2]]
    assert ids(job_id="nobody") == []

    # Runs that started at the same instant come newest (highest run_id) first.
    set_column(store, etl_job_runs, {"started_at": T0}, job_id="b")
    assert ids(job_id="b") == [runs[3], runs[1]]


# ---------------------------------------------------------------------------------- timestamps


def _assert_utc(value: datetime | None) -> None:
    assert value is not None and value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


def test_watermark_timestamps_round_trip_exactly(store: ControlStore) -> None:
    store.sync_jobs([job("by_run"), job("by_hand")])
    precise = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    # The same instant written in another timezone comes back in UTC.
    elsewhere = precise.astimezone(timezone(timedelta(hours=5, minutes=30)))

    handle = start(store, "by_run", ts_mark(elsewhere, 3))
    run = succeed(store, handle, ts_mark(elsewhere + timedelta(microseconds=1), 4))
    mark = store.get_watermark("by_run")
    assert mark is not None
    assert mark.last_value_timestamp == precise + timedelta(microseconds=1)
    assert mark.last_value_timestamp.microsecond == 123457
    assert (run.watermark_start, run.watermark_start_integer) == (precise, 3)
    assert run.watermark_end == precise + timedelta(microseconds=1)

    by_hand = store.set_watermark(
        "by_hand", source_table="orders", column="updated_at", value=ts_mark(precise)
    )
    assert by_hand.last_value_timestamp == precise
    assert by_hand.last_value_timestamp is not None
    assert by_hand.last_value_timestamp.isoformat() == "2024-01-01T12:00:00.123456+00:00"
    again = store.get_watermark("by_hand")
    assert again is not None and again.last_value_timestamp == precise

    for value in (
        mark.last_value_timestamp,
        mark.last_updated_at,
        run.watermark_start,
        run.watermark_end,
        run.started_at,
        run.finished_at,
        run.heartbeat_at,
        again.last_value_timestamp,
    ):
        _assert_utc(value)


def test_control_timestamps_are_utc_and_ordered(store: ControlStore) -> None:
    before = store.now()
    store.sync_jobs([job("a")])
    handle = start(store, "a")
    store.heartbeat(handle)
    run = succeed(store, handle, None)
    after = store.now()
    record = store.get_job("a")

    for value in (before, after, record.created_at, record.updated_at, run.started_at):
        _assert_utc(value)
    _assert_utc(run.finished_at)
    _assert_utc(run.heartbeat_at)
    assert run.finished_at is not None and run.heartbeat_at is not None
    assert record.created_at is not None
    assert before <= record.created_at <= run.started_at <= run.finished_at <= after
    assert run.started_at == handle.started_at
    assert run.started_at <= run.heartbeat_at <= run.finished_at


def test_checkpoint_data_round_trips(store: ControlStore) -> None:
    store.sync_jobs([job("a")])
    handle = start(store, "a")
    checkpoint = {
        "last_pr_cursor": "Y3Vyc29yOnYyOpK5MjAyNC0wMS0xNVQxMjowMDowMFo=",
        "repositories_processed": ["repo1", "repo2"],
        "batch_number": 5,
        "recovery_mode": True,
        "nested": {"ratio": 0.5, "none": None, "unicode": "naïve ✓"},
    }
    store.save_checkpoint(handle, checkpoint, Counts(rows_read=5))
    assert store.get_checkpoint("a") == checkpoint
    live = store.live_run("a")
    assert live is not None and live.rows_read == 5
    store.reset_checkpoint("a")
    assert store.get_checkpoint("a") is None
