"""kill -9 of a parallel first load (PostgreSQL → PostgreSQL), again and again, then a clean run.

Several ranges are under way at each kill: some committed and checkpointed, some committed with
their checkpoint unsaved, some rolled back. Each new run resumes the parallel load from its
checkpoint. At the end the target equals the source, the watermark sits on the greatest key and
never moved backward, and every killed run is accounted for.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from tests.faults.harness import kill_env, run
from tests.helpers import copy_job, seed_orders, snapshot

ROWS = 3000
BATCH = 100


def _runs(project: Path) -> list[dict[str, Any]]:
    result = run(project, "runs", "sync", "--json")
    assert result.returncode == 0, result.stderr
    return list(reversed(json.loads(result.stdout)))  # oldest first


def test_kill_a_parallel_load_repeatedly_then_finish(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    seed_orders(engine, ROWS, per_timestamp=4)
    job = copy_job(batch_size=BATCH, parallelism=4)
    project = write_project(connections={"db": pg_url}, jobs={"sync": job})
    checkpoints: list[dict[str, Any]] = []

    for point, nth in [("after_target_commit", 3), ("mid_batch", 4), ("after_target_commit", 5)]:
        killed = run(project, "run", "sync", env=kill_env(point, nth))
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        shown = run(project, "checkpoint", "show", "sync")
        checkpoint = json.loads(shown.stdout)
        assert checkpoint is not None and checkpoint["parallel"] is True
        checkpoints.append(checkpoint)

    finished = run(project, "run", "sync")

    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    runs = _runs(project)
    assert [r["run_status"] for r in runs] == ["failed"] * 3 + ["success"]
    assert all("abandoned" in r["error_message"] for r in runs[:3])
    # Each resumed run went on from its checkpoint rather than starting over.
    assert all(r["rows_read"] < ROWS for r in runs[1:])
    shown = run(project, "watermark", "show", "sync", "--json")
    mark = json.loads(shown.stdout)
    assert mark["last_value_integer"] == ROWS
    # The checkpointed prefix never went back from one kill to the next.
    prefixes = [
        (c.get("last_value_timestamp", ""), c.get("last_value_integer", 0)) for c in checkpoints
    ]
    assert prefixes == sorted(prefixes)
