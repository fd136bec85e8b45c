"""A fleet: 4 worker processes share many jobs on one PostgreSQL, or one MariaDB, control store.

Every job fires every 2 seconds and copies a tiny source table into its own target. The fleet runs
until every job has completed at least 2 slots, then all workers get SIGTERM. Whatever the
interleaving (the fleet is deliberately slower than the schedule, so newer slots stand in for
pending ones and workers race for the same rows):

* no (job, slot, attempt) ran twice, and every slot that is done has exactly one successful run;
* no job ever had two runs at once (their [started_at, finished_at] intervals never overlap);
* every run is a first attempt triggered by the scheduler (nothing failed, nothing was retried);
* every job got its turn (none starves while others run again and again);
* all 4 workers did some of the work; each exits 0 on SIGTERM.

Size: 120 jobs (``HIGHMARK_FLEET_JOBS`` changes it). A forked run costs ~0.1 s of CPU (new
connections, reflection of source and target, ~30 statements) plus the database's share. Since
due jobs are enqueued 25 per short transaction (runs' checkpoint writes no longer wait for one long
enqueue), 200 jobs x 2 slots took ~95-100 s per backend on the 2-core test machine while it was
shared with other work (173 s with one transaction per enqueue): the suite's longest test by far.
120 jobs fire 60 runs a second, far more than 4 workers run (5-10 a second on 2 cores), so the
fleet is as overloaded as with 200 (newer slots stand in for pending ones, workers race for the
same rows) for about two thirds of the time (65 s and 51 s against 99 s and 74 s, measured side
by side on one machine); ``HIGHMARK_FLEET_JOBS=200`` (or more) is the heavier run.

The lease here is 10 s (heartbeat 1 s): on a machine this overloaded a 2 s lease lapses under
healthy workers, and takeovers (correct, but with attempt 2) would blur what this test checks;
test_worker_faults covers lapsed leases on purpose.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select

from highmark import Project
from highmark.store.queue import WorkQueue
from highmark.store.tables import etl_job_slots, etl_jobs
from tests.helpers import create_orders, insert_orders, order
from tests.worker.support import EVERY_2S, Workers, job, runs, slots, wait_until, write_project

JOBS = int(os.environ.get("HIGHMARK_FLEET_JOBS", "120"))
WORKERS = 4
SLOTS_EACH = 2


def _done_per_job(engine: Engine) -> Counter[str]:
    if not inspect(engine).has_table("etl_job_slots"):  # the workers are still migrating
        return Counter()
    with engine.connect() as conn:
        rows = conn.execute(
            select(etl_job_slots.c.job_id, func.count())
            .where(etl_job_slots.c.status == "done")
            .group_by(etl_job_slots.c.job_id)
        ).all()
    return Counter({job_id: count for job_id, count in rows})


@pytest.mark.serial
@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_four_workers_run_each_slot_of_every_job_exactly_once(
    backend: str,
    request: pytest.FixtureRequest,
    engine_for: Callable[[str], Engine],
    workers: Workers,
    tmp_path: Path,
) -> None:
    url = str(request.getfixturevalue("pg_url" if backend == "postgresql" else "mysql_url"))
    engine = engine_for(url)
    insert_orders(engine, create_orders(engine), [order(i) for i in range(1, 4)])
    job_ids = [f"job_{i:03d}" for i in range(JOBS)]
    project = write_project(
        tmp_path / "highmark.yml",
        control=url,
        connections={"db": url},
        jobs={j: job("orders", f"copy_{j}", schedule=EVERY_2S) for j in job_ids},
        worker={"lease": "10s", "heartbeat": "1s"},
    )
    began = time.monotonic()
    fleet = [workers.start(project, "--worker-id", f"w{i}") for i in range(WORKERS)]

    def all_done() -> bool:
        done = _done_per_job(engine)
        return all(done[j] >= SLOTS_EACH for j in job_ids)

    wait_until(all_done, f"every job to complete {SLOTS_EACH} slots", timeout=120, watch=fleet)
    elapsed = time.monotonic() - began
    for worker in fleet:
        worker.signal(signal.SIGTERM)
    codes = [w.wait() for w in fleet]
    assert codes == [0] * WORKERS, "\n".join(w.log()[-3000:] for w in fleet)

    all_runs = runs(engine)
    all_slots = slots(engine)
    print(f"{backend}: {len(all_runs)} runs, {len(all_slots)} slots in {elapsed:.1f}s")

    attempts = Counter((r["job_id"], r["scheduled_for"], r["attempt"]) for r in all_runs)
    assert not [k for k, n in attempts.items() if n > 1], "a slot attempt ran twice"

    successes: dict[tuple[str, object], int] = Counter(
        (r["job_id"], r["scheduled_for"]) for r in all_runs if r["run_status"] == "success"
    )
    done = [(s["job_id"], s["scheduled_for"]) for s in all_slots if s["status"] == "done"]
    assert done
    assert [k for k in done if successes[k] != 1] == []

    by_job: dict[str, list[tuple[object, object]]] = defaultdict(list)
    for r in all_runs:
        assert r["finished_at"] is not None, f"run {r['run_id']} never finished"
        by_job[r["job_id"]].append((r["started_at"], r["finished_at"]))
    for job_id, intervals in by_job.items():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"{job_id} had two runs at once"

    unsuccessful = [
        (r["job_id"], r["attempt"], r["run_status"], r["error_message"])
        for r in all_runs
        if r["run_status"] != "success"
    ]
    assert unsuccessful == []
    assert {(r["triggered_by"], r["attempt"]) for r in all_runs} == {("scheduler", 1)}
    per_worker = Counter(r["worker_id"] for r in all_runs)
    assert set(per_worker) == {f"w{i}" for i in range(WORKERS)}, per_worker


def test_a_job_whose_slot_was_never_started_keeps_its_place_in_the_line(
    pg_url: str, engine_for: Callable[[str], Engine], tmp_path: Path
) -> None:
    """What keeps the fleet fair when it cannot keep up: the slot that stands in for a pending
    one waits since the pending one did, so it is claimed before jobs that ran meanwhile."""
    engine = engine_for(pg_url)
    insert_orders(engine, create_orders(engine), [order(1)])
    path = write_project(
        tmp_path / "highmark.yml",
        control=pg_url,
        connections={"db": pg_url},
        jobs={j: job("orders", f"copy_{j}", schedule="0 0 * * *") for j in ("a_ran", "b_waits")},
    )
    project = Project.load(path)
    queue = WorkQueue(project.store)
    now = project.store.now()
    day = timedelta(days=1)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        for job_id, status in (("a_ran", "done"), ("b_waits", "pending")):
            conn.execute(
                etl_job_slots.insert().values(
                    job_id=job_id,
                    scheduled_for=midnight - day,
                    status=status,
                    attempt=1 if status == "done" else 0,
                    missed=0,
                    not_before=midnight - day,
                )
            )
        conn.execute(etl_jobs.update().values(next_due_at=midnight))

    assert {e.job_id for e in queue.enqueue_due()} == {"a_ran", "b_waits"}
    (claim,) = queue.claim("w", 1, timedelta(seconds=10))

    assert (claim.job_id, claim.scheduled_for) == ("b_waits", midnight)
    by_job = {(s["job_id"], s["scheduled_for"]): s for s in slots(engine)}
    assert by_job["b_waits", midnight - day]["status"] == "skipped"
    assert by_job["b_waits", midnight]["not_before"] == midnight - day
    assert by_job["a_ran", midnight]["not_before"] == midnight
