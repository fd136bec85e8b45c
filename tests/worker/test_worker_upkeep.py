"""A running worker does the shared upkeep: stale-job alerts, alert retries, purges."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import yaml
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import Engine

from highmark import Project
from highmark.store.tables import etl_job_runs, etl_run_summaries
from tests.helpers import create_orders, insert_orders, order
from tests.worker.support import Workers, job, wait_until, write_project


def test_a_worker_raises_stale_alerts_and_purges_old_runs(
    tmp_path: Path, engine_for: Callable[[str], Engine], workers: Workers
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine = engine_for(url)
    insert_orders(engine, create_orders(engine), [order(i) for i in range(1, 4)])
    received = tmp_path / "alerts.jsonl"
    sink = tmp_path / "sink.py"
    sink.write_text(
        "import sys\n"
        f"open({str(received)!r}, 'a').write(sys.stdin.read().replace('\\n', ' ') + '\\n')\n"
    )
    project_file = write_project(
        tmp_path / "highmark.yml",
        control=url,
        connections={"db": url},
        jobs={"sync": job(schedule=None, freshness="1h")},
    )
    document = yaml.safe_load(project_file.read_text())
    document["alerts"] = [{"type": "command", "command": [sys.executable, str(sink)]}]
    document["retention"] = {"runs_days": 30, "purge_every": "1h"}
    project_file.write_text(yaml.safe_dump(document))

    project = Project.load(project_file)
    old = project.run("sync")
    # Make the only success 40 days old: the job is stale, and its run is past retention.
    control = create_engine(url)
    with control.begin() as conn:
        conn.execute(
            update(etl_job_runs)
            .where(etl_job_runs.c.run_id == old.run_id)
            .values(
                started_at=old.started_at - timedelta(days=40),
                finished_at=old.started_at - timedelta(days=40),
            )
        )
        conn.execute(text("UPDATE etl_watermarks SET last_updated_at = '2000-01-01 00:00:00'"))

    worker = workers.start(project_file)
    wait_until(lambda: received.exists() and received.read_text(), "a stale alert", watch=[worker])

    def summarised() -> bool:
        with control.connect() as conn:
            return conn.execute(select(etl_run_summaries.c.runs)).scalar() == 1

    wait_until(summarised, "the purge", watch=[worker])
    assert worker.stop() == 0
    alert = json.loads(received.read_text().splitlines()[0])
    assert alert["event"] == "stale" and alert["job_id"] == "sync"
    with control.connect() as conn:
        assert conn.execute(select(etl_job_runs.c.run_id)).all() == []
    assert "stale alert(s) raised" in worker.log() and "purged old history" in worker.log()
    control.dispose()
