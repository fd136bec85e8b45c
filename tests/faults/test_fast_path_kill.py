"""kill -9 in the middle of a fast-path load (highmark/destinations/ranges.py), then a resume.

On every pair's fast path (SQLite → SQLite inside the engine, PostgreSQL → MariaDB and SQLite →
MariaDB through LOAD DATA LOCAL, MariaDB → MariaDB inside the server, PostgreSQL → SQLite,
SQLite → PostgreSQL, MariaDB → PostgreSQL and MariaDB → SQLite through driver tuples), the child
is killed mid-batch (the batch's transaction rolls back) or after a batch committed but before
its checkpoint was saved (the resumed run removes it and loads it again), for a first load and
for a full load. The next run resumes from the checkpoint, and the target ends equal to the
source with every row counted once.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.faults.harness import kill_env, run
from tests.helpers import seed_orders, snapshot

ROWS = 120
BATCH = 10


@pytest.mark.parametrize("point", ["mid_batch:3", "after_target_commit:3"])
@pytest.mark.parametrize("load_type", ["incremental", "full"])
@pytest.mark.parametrize(
    "pair",
    [
        "sqlite-sqlite",
        "postgresql-mysql",
        "mysql-mysql",
        "postgresql-sqlite",
        "sqlite-postgresql",
        "mysql-postgresql",
        "mysql-sqlite",
        "sqlite-mysql",
    ],
)
def test_kill_a_fast_path_load_then_resume(
    pair: str,
    load_type: str,
    point: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    urls = {
        "sqlite": lambda label: f"sqlite:///{tmp_path / (label + '.db')}",
        "postgresql": lambda _label: str(request.getfixturevalue("pg_url")),
        "mysql": lambda _label: str(request.getfixturevalue("mysql_url")),
    }
    source_kind, target_kind = pair.split("-")
    src_url, dst_url = urls[source_kind]("src"), urls[target_kind]("dst")
    source, target = engine_for(src_url), engine_for(dst_url)
    seed_orders(source, ROWS, per_timestamp=3)
    job: dict[str, Any] = {
        "load_type": load_type,
        "source": {"connection": "src", "table": "orders"},
        "target": {"connection": "dst", "table": "orders_copy"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "batch_size": BATCH,
    }
    project = write_project(connections={"src": src_url, "dst": dst_url}, jobs={"sync": job})
    name, _, nth = point.partition(":")

    killed = run(project, "run", "sync", env=kill_env(name, int(nth)))

    assert killed.returncode == -signal.SIGKILL
    checkpoint = json.loads(run(project, "checkpoint", "show", "sync").stdout)
    assert checkpoint is not None and checkpoint["batch_number"] >= 1
    again = run(project, "run", "sync")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert snapshot(target, "orders_copy") == snapshot(source, "orders")
    runs = list(reversed(json.loads(run(project, "runs", "sync", "--json").stdout)))
    assert [r["run_status"] for r in runs] == ["failed", "success"]
    assert runs[-1]["rows_read"] < ROWS  # resumed, not started over
    if load_type == "incremental":
        # The rows the killed run committed past its checkpoint were removed and written
        # again: every row is counted once.
        assert sum(r["rows_written"] for r in runs) <= ROWS
        if name == "mid_batch":
            assert sum(r["rows_written"] for r in runs) == ROWS
