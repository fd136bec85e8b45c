"""Prometheus metrics from the control tables, on real SQLite, PostgreSQL and MariaDB: the output
of ``highmark metrics`` parsed back with prometheus_client's own parser, after real runs."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.engine import Engine, make_url

from highmark.db import create_configured_engine
from highmark.metrics import DURATION_BUCKETS, render, serve
from highmark.models import RunStatus
from highmark.retention import purge
from highmark.store.store import ControlStore
from highmark.store.tables import etl_job_runs, etl_jobs, etl_watermarks
from tests.cli.runner import finish, hm, start
from tests.conftest import PG_ADMIN_URL
from tests.helpers import create_orders, insert_orders, order
from tests.operations.support import (
    add_running,
    add_runs,
    job,
    load,
    make_runs,
    old_day,
    write_project,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels (the parser rejects malformed text)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_after_real_runs(
    db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    engine = engine_for(db_url)
    orders = create_orders(engine)
    insert_orders(engine, orders, [order(i) for i in range(1, 21)])
    project = load(
        write_project(
            tmp_path,
            db_url,
            jobs={
                # An integer watermark: its window does not depend on other sessions (on a
                # MariaDB server busy with other tests, innodb_trx may stay stale and hold a
                # timestamp window back).
                "good": job(watermark={"column": "id", "type": "integer"}, freshness="1h"),
                "broken": job(source="missing_table", target="missing_copy", freshness="1h"),
                "idle": job(target="orders_idle"),  # no freshness SLA; a live run
            },
        )
    )
    store = project.store
    first = project.run("good")
    insert_orders(engine, orders, [order(i) for i in range(21, 26)])
    second = project.run("good")
    failed = project.run("broken")
    assert [r.run_status for r in (first, second, failed)] == [
        RunStatus.SUCCESS,
        RunStatus.SUCCESS,
        RunStatus.FAILED,
    ]
    now = store.now()
    with store.engine.begin() as connection:  # the mark moved an hour ago; broken is 2 h old
        connection.execute(update(etl_watermarks).values(last_updated_at=now - timedelta(hours=1)))
        connection.execute(
            update(etl_jobs)
            .where(etl_jobs.c.job_id == "broken")
            .values(created_at=now - timedelta(hours=2))
        )
    add_running(store, "idle", now)

    samples = parse(hm("metrics", cwd=tmp_path).out)

    assert value(samples, "highmark_control_store_up") == 1
    runs = {
        (job_id, status): value(samples, "highmark_runs_total", job_id=job_id, status=status)
        for job_id in ("good", "broken", "idle")
        for status in ("success", "failed", "cancelled")
    }
    assert runs == {
        ("good", "success"): 2, ("good", "failed"): 0, ("good", "cancelled"): 0,
        ("broken", "success"): 0, ("broken", "failed"): 1, ("broken", "cancelled"): 0,
        ("idle", "success"): 0, ("idle", "failed"): 0, ("idle", "cancelled"): 0,
    }  # fmt: skip
    for kind in ("read", "written", "updated", "deleted"):
        expected = sum(getattr(r, f"rows_{kind}") for r in (first, second))
        assert value(samples, "highmark_rows_total", job_id="good", kind=kind) == expected
    assert value(samples, "highmark_rows_total", job_id="good", kind="written") == 25
    assert value(samples, "highmark_rows_total", job_id="idle", kind="read") == 0  # live: not yet

    durations = [r.duration_seconds or 0 for r in (first, second)]
    assert value(samples, "highmark_run_duration_seconds_count", job_id="good") == 2
    assert value(samples, "highmark_run_duration_seconds_sum", job_id="good") == sum(durations)
    for bound in DURATION_BUCKETS:
        le = str(int(bound))
        assert value(samples, "highmark_run_duration_seconds_bucket", job_id="good", le=le) == sum(
            d <= bound for d in durations
        )
    assert value(samples, "highmark_run_duration_seconds_count", job_id="broken") == 1
    assert value(samples, "highmark_run_duration_seconds_count", job_id="idle") is None

    assert value(samples, "highmark_running_runs", job_id="idle") == 1
    assert value(samples, "highmark_running_runs", job_id="good") == 0
    assert second.finished_at is not None
    last = value(samples, "highmark_last_success_timestamp_seconds", job_id="good")
    assert last == pytest.approx(second.finished_at.timestamp(), abs=0.001)
    assert value(samples, "highmark_last_success_timestamp_seconds", job_id="broken") is None
    age = value(samples, "highmark_watermark_age_seconds", job_id="good")
    assert age is not None and 3600 <= age < 3660
    assert value(samples, "highmark_watermark_age_seconds", job_id="broken") is None
    assert value(samples, "highmark_job_stale", job_id="good") == 0
    assert value(samples, "highmark_job_stale", job_id="broken") == 1  # never succeeded in 2 h
    assert value(samples, "highmark_job_stale", job_id="idle") is None  # no SLA

    # Two hours later (as far as the runs and the mark know), good is stale too.
    with store.engine.begin() as connection:
        connection.execute(
            update(etl_job_runs)
            .where(etl_job_runs.c.job_id == "good")
            .values(finished_at=now - timedelta(hours=2))
        )
        connection.execute(update(etl_watermarks).values(last_updated_at=now - timedelta(hours=2)))
    later = parse(render(store, project.config).decode())
    assert value(later, "highmark_job_stale", job_id="good") == 1


def test_counters_include_purged_runs(db_url: str, tmp_path: Path) -> None:
    project = load(
        write_project(
            tmp_path,
            db_url,
            jobs={"a": job(freshness="1h"), "b": job(target="orders_b")},
            retention={"runs_days": 30, "batch_size": 100},
        )
    )
    store = project.store
    day = old_day(store)
    old = make_runs("a", day, 230) + make_runs("b", day, 40, seed=1)
    recent = make_runs("a", store.now() - timedelta(days=1), 12, seed=4)
    add_runs(store, old + recent)
    before = parse(render(store, project.config).decode())

    assert purge(store, project.config.retention).tables["etl_job_runs"].rows == len(old)

    after = parse(render(store, project.config).decode())
    counters = {k for k in before if k[0] in ("highmark_runs_total", "highmark_rows_total")}
    assert (
        len(counters) == 2 * 3 + 2 * 5
    )  # statuses; rows read, written, updated, deleted, rejected
    assert {k: after[k] for k in counters} == {k: before[k] for k in counters}
    for status in ("success", "failed", "cancelled"):
        expected = sum(r["run_status"] == status for r in old + recent if r["job_id"] == "a")
        assert value(after, "highmark_runs_total", job_id="a", status=status) == expected
    assert value(after, "highmark_rows_total", job_id="b", kind="read") == sum(
        r["rows_read"] for r in old if r["job_id"] == "b"
    )
    # The histogram covers the runs still in etl_job_runs.
    assert value(after, "highmark_run_duration_seconds_count", job_id="a") == len(recent)
    assert value(after, "highmark_run_duration_seconds_count", job_id="b") is None


def test_serve_answers_get_metrics(tmp_path: Path) -> None:
    project = load(write_project(tmp_path, f"sqlite:///{tmp_path / 'control.db'}"))
    add_runs(project.store, make_runs("a", project.store.now() - timedelta(hours=1), 5))
    server = serve(project.store, project.config, 0)
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse(response.text)
    assert value(samples, "highmark_runs_total", job_id="a", status="success") == 3


@pytest.mark.postgres
def test_serve_says_when_the_control_store_is_down(tmp_path: Path) -> None:
    """A scrape while the control database is unreachable answers, with up = 0."""
    project = load(write_project(tmp_path, f"sqlite:///{tmp_path / 'control.db'}"))
    missing = make_url(PG_ADMIN_URL).set(database="hm_no_such_database")
    down = ControlStore(create_configured_engine(missing, "control"))
    server = serve(down, project.config, 0)
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
        down.engine.dispose()
    assert response.status_code == 200
    assert parse(response.text) == {("highmark_control_store_up", frozenset()): 0}


def test_worker_serves_metrics(tmp_path: Path) -> None:
    """``highmark worker --metrics-port`` answers GET /metrics while it works."""
    load(write_project(tmp_path, f"sqlite:///{tmp_path / 'control.db'}"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ("worker", "--metrics-port", str(port))
    worker = start(args, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
                break
            except httpx.TransportError:
                assert worker.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert response.status_code == 200
        assert value(parse(response.text), "highmark_running_runs", job_id="a") == 0
    finally:
        worker.send_signal(signal.SIGTERM)
    finish(args, worker, code=0)
