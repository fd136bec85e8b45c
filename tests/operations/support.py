"""Projects with a run history for retention and metrics tests: runs written straight into
``etl_job_runs`` (thousands in one statement), control tables read back as plain rows, and the
roll-up a purge must produce, computed here independently of highmark's own code."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, insert, select

from highmark.project import Project
from highmark.store.store import ControlStore
from highmark.store.tables import etl_job_runs, etl_run_summaries

SUMMARY_COLUMNS = (
    "runs", "successes", "failures", "cancelled", "rows_read", "rows_written", "rows_updated",
    "rows_deleted", "duration_seconds_total", "duration_seconds_max",
)  # fmt: skip
COUNTS = ("rows_read", "rows_written", "rows_updated", "rows_deleted")


def write_project(
    directory: Path,
    url: str,
    *,
    jobs: dict[str, dict[str, Any]] | None = None,
    retention: dict[str, Any] | None = None,
) -> Path:
    """A project whose control store, source and target share one database; jobs ``a`` and
    ``b`` by default (their tables need not exist for retention and metrics)."""
    document: dict[str, Any] = {
        "control": url,
        "connections": {"db": url},
        "jobs": jobs or {"a": job(), "b": job(target="orders_b")},
    }
    if retention is not None:
        document["retention"] = retention
    path = directory / "highmark.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def job(source: str = "orders", target: str = "orders_copy", **spec: Any) -> dict[str, Any]:
    return {
        "load_type": "incremental",
        "source": {"connection": "db", "table": source},
        "target": {"connection": "db", "table": target},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        **spec,
    }


def load(path: Path) -> Project:
    return Project.load(path)


def old_day(store: ControlStore, days: int = 40) -> datetime:
    """Midnight (UTC) ``days`` days ago by the control database's clock."""
    return datetime.combine((store.now() - timedelta(days=days)).date(), time(), tzinfo=UTC)


def make_runs(
    job_id: str,
    first: datetime,
    n: int,
    *,
    every: timedelta = timedelta(seconds=10),
    statuses: tuple[str, ...] = ("success", "success", "failed", "success", "cancelled"),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """``n`` finished runs of ``job_id`` from ``first`` on, with varied statuses and counts."""
    runs = []
    for i in range(n):
        k = i + seed
        started = first + every * i
        duration = (k * 7) % 50
        runs.append(
            {
                "job_id": job_id,
                "run_status": statuses[k % len(statuses)],
                "started_at": started,
                "finished_at": started + timedelta(seconds=duration),
                "duration_seconds": duration,
                "rows_read": k * 3 + 1,
                "rows_written": k % 11,
                "rows_updated": k % 5,
                "rows_deleted": k % 3,
                "triggered_by": "scheduler",
            }
        )
    return runs


def add_runs(store: ControlStore, runs: list[dict[str, Any]]) -> None:
    with store.engine.begin() as connection:
        connection.execute(insert(etl_job_runs), runs)


def add_running(store: ControlStore, job_id: str, started: datetime) -> None:
    """A live run (its process may be long gone: purge must keep it all the same)."""
    add_runs(
        store,
        [
            {
                "job_id": job_id,
                "run_status": "running",
                "started_at": started,
                "heartbeat_at": started,
                "live_job_id": job_id,
                "rows_read": 5,
                "rows_written": 5,
                "rows_updated": 0,
                "rows_deleted": 0,
                "triggered_by": "manual",
            }
        ],
    )


def roll_up(runs: Iterable[dict[str, Any]]) -> dict[tuple[str, date], dict[str, int]]:
    """What etl_run_summaries must hold for ``runs``: per job and UTC day of started_at."""
    out: dict[tuple[str, date], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(SUMMARY_COLUMNS, 0)
    )
    for run in runs:
        row = out[(run["job_id"], run["started_at"].date())]
        row["runs"] += 1
        row["successes"] += run["run_status"] == "success"
        row["failures"] += run["run_status"] == "failed"
        row["cancelled"] += run["run_status"] == "cancelled"
        for column in COUNTS:
            row[column] += run[column]
        row["duration_seconds_total"] += run["duration_seconds"] or 0
        row["duration_seconds_max"] = max(row["duration_seconds_max"], run["duration_seconds"] or 0)
    return dict(out)


def summaries(store: ControlStore) -> dict[tuple[str, date], dict[str, int]]:
    with store.engine.connect() as connection:
        rows = connection.execute(select(etl_run_summaries)).mappings().all()
    return {(row["job_id"], row["day"]): {c: int(row[c]) for c in SUMMARY_COLUMNS} for row in rows}


def run_rows(store: ControlStore) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        rows = connection.execute(select(etl_job_runs).order_by(etl_job_runs.c.run_id))
        return [dict(row._mapping) for row in rows]


def count(store: ControlStore, table: Any) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def table_rows(store: ControlStore, table: Any) -> list[tuple[Any, ...]]:
    """Every row of a control table, in a stable order (to prove a dry run changed nothing)."""
    with store.engine.connect() as connection:
        rows = connection.execute(select(table)).all()
    return sorted((tuple(row) for row in rows), key=repr)
