"""Which alerts real runs raise, on SQLite and PostgreSQL (and the unique key on MariaDB too): one
``failed`` and one ``consecutive_failures`` per failure streak, one ``recovered`` per recovery,
one ``stale`` per stale episode; cancelled runs count for nothing; sinks' ``jobs``/``events``
filters; several processes raising one alert make one row and one delivery.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from highmark import CancelToken, RunStatus, alerts
from tests.alerts.support import (
    JOB,
    OTHER,
    Source,
    WebhookServer,
    age_runs,
    alert_rows,
    full_job,
    load,
    webhook_server,
    write_project,
)

PARALLEL_RAISERS = 2


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def hooks() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def _events(hooks: WebhookServer, name: str) -> list[tuple[str, str]]:
    return [(b["event"], b["job_id"]) for b in hooks.bodies(f"/{name}/")]


def test_one_alert_per_streak_and_recovery_with_filters(
    tmp_path: Path, url: str, engine_for: Callable[[str], Engine], hooks: WebhookServer
) -> None:
    engine = engine_for(url)
    path = write_project(
        tmp_path / "highmark.yml",
        url,
        jobs={JOB: full_job(), OTHER: full_job("customers", "customers_copy")},
        alerts=[
            {"type": "webhook", "url": hooks.url("all")},
            {
                "type": "webhook",
                "url": hooks.url("pager"),
                "events": ["consecutive_failures", "recovered"],
            },
            {"type": "webhook", "url": hooks.url("other"), "jobs": [OTHER]},
        ],
        alerting={"consecutive_failures": 3},
    )
    project = load(path)
    source = Source(engine)
    assert project.run(JOB).succeeded
    source.drop()
    first = project.run(JOB)
    second = project.run(JOB)
    assert (first.run_status, second.run_status) == (RunStatus.FAILED, RunStatus.FAILED)
    assert _events(hooks, "all") == [("failed", JOB)]  # the retry is the same streak

    # A cancelled run in the middle neither ends the streak nor counts in it.
    source.create()
    token = CancelToken()
    token.cancel("cancelled by the test")
    assert project.run(JOB, cancel=token).run_status is RunStatus.CANCELLED
    source.drop()
    third = project.run(JOB)
    assert _events(hooks, "all") == [("failed", JOB), ("consecutive_failures", JOB)]
    fourth = project.run(JOB)
    assert fourth.run_status is RunStatus.FAILED
    assert len(hooks.received) == 3  # nothing new for the fourth failure

    source.create()
    recovered = project.run(JOB)
    assert recovered.succeeded
    token = CancelToken()
    token.cancel("cancelled by the test")
    assert project.run(JOB, cancel=token).run_status is RunStatus.CANCELLED
    assert project.run(JOB).succeeded  # no second recovery

    assert _events(hooks, "all") == [
        ("failed", JOB),
        ("consecutive_failures", JOB),
        ("recovered", JOB),
    ]
    assert _events(hooks, "pager") == [("consecutive_failures", JOB), ("recovered", JOB)]
    assert _events(hooks, "other") == []
    failed, consecutive, back = hooks.bodies("/all/")
    assert failed["run_id"] == first.run_id
    assert failed["dedup_key"] == f"failed:{JOB}:{first.run_id}"
    assert consecutive["run_id"] == third.run_id
    assert consecutive["failures"] == 3
    assert consecutive["threshold"] == 3
    assert consecutive["message"].startswith(
        f"{JOB} failed 3 times in a row (runs {first.run_id} to {third.run_id}); last error: "
    )
    assert back["run_id"] == recovered.run_id
    assert back["failures"] == 4
    assert back["first_failed_run_id"] == first.run_id
    assert back["last_failed_run_id"] == fourth.run_id
    assert back["message"] == (
        f"{JOB} recovered: run {recovered.run_id} succeeded after 4 failed runs "
        f"(runs {first.run_id} to {fourth.run_id})"
    )

    rows = alert_rows(engine)
    assert len(rows) == 5
    assert {(r["event"], r["status"], r["attempts"]) for r in rows} == {
        ("failed", "sent", 1),
        ("consecutive_failures", "sent", 1),
        ("recovered", "sent", 1),
    }

    # A new failure is a new streak: a new `failed` alert, keyed on it.
    source.drop()
    again = project.run(JOB)
    assert hooks.bodies("/all/")[-1]["dedup_key"] == f"failed:{JOB}:{again.run_id}"
    assert len(alert_rows(engine)) == 6

    # The other job's failures go to the sink that names it, and to the catch-all one.
    assert project.run(OTHER).run_status is RunStatus.FAILED
    assert _events(hooks, "other") == [("failed", OTHER)]
    assert _events(hooks, "all")[-1] == ("failed", OTHER)
    listed = alerts.list_alerts(project.store, 100, job_id=OTHER)
    assert [(a.event, a.status) for a in listed] == [("failed", "sent"), ("failed", "sent")]
    assert [a.event for a in alerts.list_alerts(project.store, 2)] == ["failed", "failed"]


def test_stale_once_per_episode(
    tmp_path: Path, url: str, engine_for: Callable[[str], Engine], hooks: WebhookServer
) -> None:
    engine = engine_for(url)
    path = write_project(
        tmp_path / "highmark.yml",
        url,
        jobs={
            JOB: full_job(freshness="1h"),
            OTHER: full_job("customers", "customers_copy", freshness="30m"),
            "no_sla": full_job(target="orders_other"),
        },
        alerts=[
            {"type": "webhook", "url": hooks.url("all")},
            {"type": "webhook", "url": hooks.url("failures"), "events": ["failed"]},
        ],
    )
    project = load(path)
    Source(engine)
    assert project.run(JOB).succeeded
    assert project.run("no_sla").succeeded
    assert alerts.check_freshness(project.store, project.config) == []  # all fresh

    for job_id in (JOB, OTHER, "no_sla"):
        age_runs(engine, job_id, 2 * 3600)
    raised = alerts.check_freshness(project.store, project.config)
    assert sorted((a.job_id, a.event, a.status) for a in raised) == [
        (OTHER, "stale", "sent"),  # never succeeded, registered two hours ago
        (JOB, "stale", "sent"),
    ]
    by_job = {b["job_id"]: b for b in hooks.bodies("/all/")}
    assert by_job[JOB]["message"].startswith(f"{JOB} is stale: last success 2h ")
    assert by_job[JOB]["message"].endswith("; freshness 1h")
    assert by_job[JOB]["freshness_seconds"] == 3600
    assert by_job[JOB]["age_seconds"] >= 7200
    assert by_job[OTHER]["message"].startswith(
        f"{OTHER} is stale: no successful run since it was registered 2h"
    )
    assert hooks.bodies("/failures/") == []

    assert alerts.check_freshness(project.store, project.config) == []  # the same episode
    assert len(hooks.received) == 2

    assert project.run(JOB).succeeded  # fresh again
    assert alerts.check_freshness(project.store, project.config) == []
    age_runs(engine, JOB, 2 * 3600)  # ... and stale again: a new episode
    [again] = alerts.check_freshness(project.store, project.config)
    assert (again.job_id, again.event) == (JOB, "stale")
    assert len(hooks.received) == 3

    # A disabled job is not expected to run: it is not stale.
    assert project.run(JOB).succeeded
    age_runs(engine, JOB, 2 * 3600)
    project.disable(JOB)
    assert alerts.check_freshness(project.store, project.config) == []
    project.enable(JOB)
    assert [a.job_id for a in alerts.check_freshness(project.store, project.config)] == [JOB]

    rows = alert_rows(engine)
    assert [r["event"] for r in rows] == ["stale"] * 4
    assert len({r["dedup_key"] for r in rows}) == 4


def test_maybe_check_runs_once_between_workers(
    tmp_path: Path, url: str, engine_for: Callable[[str], Engine], hooks: WebhookServer
) -> None:
    engine = engine_for(url)
    path = write_project(
        tmp_path / "highmark.yml",
        url,
        jobs={JOB: full_job(freshness="1m")},
        alerts=[{"type": "webhook", "url": hooks.url()}],
    )
    project = load(path)
    Source(engine)
    assert project.run(JOB).succeeded
    age_runs(engine, JOB, 600)
    results: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(
                alerts.maybe_check(project.store, project.config, worker_id=f"w{i}")
            )
        )
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [r for r in results if r is not None]
    assert len(done) == 1
    assert [a.event for a in done[0].raised] == ["stale"]
    assert len(hooks.received) == 1


RAISE = """
import pathlib, sys, time
from highmark import Project, alerts
project = Project.load(sys.argv[1], sync=False, migrate=False)
record = project.store.get_run(int(sys.argv[2]))
folder = pathlib.Path(sys.argv[3])
(folder / f"ready-{sys.argv[4]}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
alerts.after_run(project.store, project.config, record)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_concurrent_raisers_make_one_row_and_one_delivery(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    hooks: WebhookServer,
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'data.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("pg_url" if backend == "postgresql" else "mysql_url"))
    )
    engine = engine_for(url)
    path = write_project(
        tmp_path / "highmark.yml",
        url,
        alerts=[{"type": "webhook", "url": hooks.url(name)} for name in ("a", "b")],
        alerting={"consecutive_failures": 2},
    )
    project = load(path)
    project.run(JOB)  # no table: fails, alerts a and b once
    second = project.run(JOB)  # consecutive_failures for both
    assert len(hooks.received) == 4
    with engine.begin() as conn:  # forget them: several processes now raise them at once
        conn.exec_driver_sql("DELETE FROM etl_alerts")
    hooks.received.clear()

    script = tmp_path / "raise.py"
    script.write_text(RAISE)
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), str(second.run_id), str(tmp_path), str(i)],
            cwd=Path(__file__).parents[2],
        )
        for i in range(PARALLEL_RAISERS)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < PARALLEL_RAISERS:  # all loaded: go at once
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.01)
    (tmp_path / "go").touch()
    assert [p.wait(timeout=60) for p in processes] == [0] * PARALLEL_RAISERS

    rows = alert_rows(engine)
    assert sorted((r["event"], r["status"]) for r in rows) == [
        ("consecutive_failures", "sent"),
        ("consecutive_failures", "sent"),
        ("failed", "sent"),
        ("failed", "sent"),
    ]
    assert len(hooks.received) == 4  # each delivered once
    assert sorted(b["event"] for b in hooks.bodies("/a/")) == ["consecutive_failures", "failed"]

    # Retries too: two processes delivering what is due at once send each alert once.
    hooks.received.clear()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE etl_alerts SET status = 'failed', sent_at = NULL, next_attempt_at = created_at"
        )
    counts: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: counts.append(alerts.deliver_pending(project.store, project.config))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 4
    assert len(hooks.received) == 4
