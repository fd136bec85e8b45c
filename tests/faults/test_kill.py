"""kill -9 of `highmark run` at chosen moments, then a new run: nothing lost, nothing twice.

Each case kills the child at a failpoint (highmark/failpoints.py) or at a random batch, runs the
job again, and checks the invariants: the target equals the source by primary key and every
column; the watermark never moved backward; the killed run ends `failed` as abandoned; the new run
resumed from the checkpoint instead of starting over; no row was counted twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.faults.harness import kill_env, run, start
from tests.helpers import BASE_TIME, create_orders, insert_orders, order, snapshot

ROWS = 30
BATCH = 4


def _setup(
    url: str,
    control: str,
    load_type: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> tuple[Engine, Path]:
    engine = engine_for(url)
    table = create_orders(engine)
    # Groups of three rows share a timestamp, so batch boundaries cut ties.
    insert_orders(
        engine,
        table,
        [order(i, at=BASE_TIME + timedelta(seconds=i // 3)) for i in range(1, ROWS + 1)],
    )
    job: dict[str, Any] = {
        "load_type": load_type,
        "source": {"connection": "db", "table": "orders"},
        "target": {"connection": "db", "table": "orders_copy"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "batch_size": BATCH,
    }
    if load_type == "full":
        job.pop("watermark")
    return engine, write_project(control=control, connections={"db": url}, jobs={"sync": job})


def _runs(project: Path) -> list[dict[str, Any]]:
    result = run(project, "runs", "sync", "--json")
    assert result.returncode == 0, result.stderr
    return list(reversed(json.loads(result.stdout)))  # oldest first


def _watermark(project: Path) -> dict[str, Any] | None:
    result = run(project, "watermark", "show", "sync", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _assert_resumed(project: Path, engine: Engine) -> list[dict[str, Any]]:
    """A new run after the kill: the killed run is abandoned, the target ends equal."""
    again = run(project, "run", "sync")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    runs = _runs(project)
    killed, resumed = runs[0], runs[-1]
    assert killed["run_status"] == "failed"
    assert "abandoned" in killed["error_message"]
    assert killed["error_details"]["retryable"] is True
    assert resumed["run_status"] == "success"
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    checkpoint = run(project, "checkpoint", "show", "sync")
    assert checkpoint.stdout.strip() == "null"  # success clears it
    # No row is counted twice across the crash and its resume.
    assert sum(r["rows_written"] for r in runs) <= ROWS
    return runs


@pytest.mark.parametrize("point", ["mid_batch:3", "after_target_commit:3", "during_final_commit:1"])
@pytest.mark.parametrize("load_type", ["incremental", "full"])
def test_kill_at_a_failpoint_then_resume(
    point: str,
    load_type: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine, project = _setup(url, url, load_type, engine_for, write_project)
    name, _, nth = point.partition(":")

    killed = run(project, "run", "sync", env=kill_env(name, int(nth)))

    assert killed.returncode == -signal.SIGKILL
    checkpoint = json.loads(run(project, "checkpoint", "show", "sync").stdout)
    assert checkpoint is not None and checkpoint["batch_number"] >= 1
    runs = _assert_resumed(project, engine)
    resumed = runs[-1]
    # The new run resumed where the killed one stopped instead of reading everything again.
    assert resumed["rows_read"] < ROWS or name == "during_final_commit"
    if name == "mid_batch" and load_type == "incremental":
        # The killed batch rolled back: every row is counted exactly once.
        assert sum(r["rows_written"] for r in runs) == ROWS
    if load_type == "incremental":
        mark = _watermark(project)
        assert mark is not None and mark["last_value_integer"] == ROWS


def test_kill_during_final_commit_reads_nothing_again(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine, project = _setup(url, url, "incremental", engine_for, write_project)
    assert run(project, "run", "sync", env=kill_env("during_final_commit")).returncode == -9
    assert _watermark(project) is None  # the finishing transaction never committed
    runs = _assert_resumed(project, engine)
    assert runs[-1]["rows_read"] == 0  # everything was loaded and checkpointed before the kill
    assert runs[-1]["watermark_end_integer"] == ROWS


@pytest.mark.parametrize("control_backend", ["postgresql", "mysql"])
def test_kill_with_server_control_store(
    control_backend: str,
    request: pytest.FixtureRequest,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    url = request.getfixturevalue("pg_url" if control_backend == "postgresql" else "mysql_url")
    engine, project = _setup(url, url, "incremental", engine_for, write_project)
    killed = run(project, "run", "sync", env=kill_env("after_target_commit", 2))
    assert killed.returncode == -signal.SIGKILL
    _assert_resumed(project, engine)


def test_kill_at_a_random_moment_many_times(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """Kill the run as soon as it has checkpointed a few more batches, several times over."""
    url = f"sqlite:///{tmp_path / 'data.db'}"
    control = tmp_path / "control.db"
    engine = engine_for(url)
    table = create_orders(engine)
    rows = 3000
    insert_orders(
        engine,
        table,
        [order(i, at=BASE_TIME + timedelta(seconds=i // 7)) for i in range(1, rows + 1)],
    )
    job = {
        "load_type": "incremental",
        "source": {"connection": "db", "table": "orders"},
        "target": {"connection": "db", "table": "orders_copy"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "batch_size": 10,
    }
    project = write_project(
        control=f"sqlite:///{control}", connections={"db": url}, jobs={"sync": job}
    )
    positions: list[int] = []
    for more_batches in (3, 5, 2):
        child = start(project, "run", "sync")
        position = _kill_after_checkpoints(control, child, more_batches)
        positions.append(position)
    again = run(project, "run", "sync")
    assert again.returncode == 0, again.stderr
    runs = _runs(project)
    assert [r["run_status"] for r in runs[:-1]] == ["failed"] * 3
    assert all("abandoned" in r["error_message"] for r in runs[:-1])
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    assert sum(r["rows_written"] for r in runs) <= rows
    # Every kill left a checkpoint further along: each run resumed, none started over.
    assert positions == sorted(positions) and positions[0] > 0
    assert runs[-1]["rows_read"] < rows - positions[-1] + 10 * 2


def _kill_after_checkpoints(control: Path, child: subprocess.Popen[str], batches: int) -> int:
    """SIGKILL the child once its checkpoint has advanced ``batches`` batches; return the
    checkpoint's keyset position (last_value_integer) at the kill."""
    import sqlite3

    def position() -> tuple[int, int]:
        try:
            with sqlite3.connect(control, timeout=5) as db:
                row = db.execute(
                    "SELECT checkpoint_data FROM etl_jobs WHERE job_id = 'sync'"
                ).fetchone()
        except sqlite3.OperationalError:
            return 0, 0
        data = json.loads(row[0]) if row and row[0] else {}
        return data.get("batch_number", 0), data.get("last_value_integer", 0)

    deadline = time.monotonic() + 60
    start_batch = None
    while child.poll() is None and time.monotonic() < deadline:
        batch, _ = position()
        if start_batch is None and batch:
            start_batch = batch
        if start_batch is not None and batch >= start_batch + batches:
            break
        time.sleep(0.005)
    child.kill()
    child.communicate()
    assert child.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return position()[1]


def test_a_first_load_killed_before_its_first_checkpoint_resumes_as_a_first_load(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """The first batch committed into the empty target, then kill -9 before its checkpoint: the
    checkpoint saved at the start says "first load", so the new run clears what was written and
    loads straight into the target again instead of merging into a half-filled one."""
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine, project = _setup(url, url, "incremental", engine_for, write_project)

    killed = run(project, "run", "sync", env=kill_env("after_target_commit", 1))

    assert killed.returncode == -signal.SIGKILL
    checkpoint = json.loads(run(project, "checkpoint", "show", "sync").stdout)
    assert checkpoint["direct"] is True and "last_value_timestamp" not in checkpoint
    runs = _assert_resumed(project, engine)
    assert runs[-1]["rows_written"] == ROWS  # written straight in again, not merged
