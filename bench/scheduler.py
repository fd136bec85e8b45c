"""Scheduler benchmark: registering jobs, finding due jobs, and claims per second on PostgreSQL.

Runs the real ``ControlStore`` / ``WorkQueue`` code against a throwaway PostgreSQL control store
(created, then dropped) and measures:

1. ``sync_jobs`` of N jobs: the first registration, and the re-sync of an unchanged file that
   every ``highmark`` command (a worker's start included) does;
2. finding due jobs among N when 0 %, 1 % and 100 % of them are due: one ``enqueue_due()`` call
   (it takes at most ``ENQUEUE_BATCH`` jobs), enqueueing every due job (calls until one returns
   nothing), and the due-jobs query alone, replayed exactly as ``enqueue_due`` sends it, with
   the key line of its ``EXPLAIN ANALYZE``;
3. claims per second: 1, 2 and 4 claimer processes, each with its own ``ControlStore``, drain a
   queue of pending slots (``claim`` a batch, ``finish`` each claim ``done`` at once) until it is
   empty; then every slot must have been claimed exactly once (attempt 1, done, claimed by one
   worker only), or the run is reported failed.

Times are medians of ``--repeat`` repetitions (default 3); the full enqueue of more than 10,000
due jobs is measured once. Everything goes to stdout and to ``--out`` as a markdown report.

    .venv/bin/python bench/scheduler.py [--jobs 10000,100000] [--workers 1,2,4] [--pg DSN]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing
import os
import platform
import pstats
import queue as queue_module
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from croniter import croniter
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url

from highmark import db
from highmark.store.queue import ENQUEUE_BATCH, Claim, SlotStatus, WorkQueue
from highmark.store.store import ControlStore, JobDefinition

REPO = Path(__file__).resolve().parents[1]
MEASURED = (  # the code this benchmark runs
    "highmark/store/queue.py",
    "highmark/store/store.py",
    "highmark/store/tables.py",
    "highmark/store/migrations/",
    "highmark/scheduler.py",
    "highmark/db.py",
)
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
# A realistic mix of schedules and zones (the cost of cron arithmetic depends on both).
SCHEDULES: list[tuple[str, str | None]] = [
    ("*/5 * * * *", None),
    ("0 * * * *", None),
    ("30 2 * * *", "Europe/Berlin"),
    ("0 6 * * 1-5", "America/New_York"),
    ("15 */4 * * *", None),
]
# (fraction of jobs due, downtime before now since which they are due: None = just due)
DUE_SCENARIOS: list[tuple[float, timedelta | None]] = [
    (0.0, None),
    (0.01, None),
    (1.0, None),
    (0.01, timedelta(days=1)),
]
LEASE = timedelta(minutes=5)
CHEAP = 10_000  # registering or enqueueing more jobs than this is measured once
QUERY_REPEAT = 20
PARTS = ["sync", "due", "claims", "profile"]
PG_SETTINGS = [
    "autovacuum",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "shared_buffers",
    "work_mem",
    "max_connections",
]


# ---------------------------------------------------------------------------- small helpers


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def most(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def fmt_cores(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def fmt_s(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def job_id(i: int) -> str:
    return f"job-{i:06d}"


def definitions(n: int) -> list[JobDefinition]:
    out = []
    for i in range(n):
        schedule, zone = SCHEDULES[i % len(SCHEDULES)]
        out.append(
            JobDefinition(
                job_id=job_id(i),
                job_name=f"copy orders {i}",
                description="copies new and changed orders",
                source_table=f"orders_{i}",
                target_table=f"orders_{i}_copy",
                load_type="incremental",
                schedule=schedule,
                is_active=True,
                timeout_seconds=3600,
                retry_count=3,
                definition={
                    "job_name": f"copy orders {i}",
                    "load_type": "incremental",
                    "schedule": schedule,
                    "schedule_timezone": zone,
                    "is_active": True,
                    "batch_size": 10_000,
                    "source": {"connection": "source", "table": f"orders_{i}"},
                    "target": {"connection": "target", "table": f"orders_{i}_copy"},
                    "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
                    "primary_key": ["id"],
                },
                schedule_timezone=zone,
            )
        )
    return out


@dataclass
class SqlTimer:
    """Statements sent and seconds spent inside the driver's ``execute`` (round trip + server)."""

    statements: int = 0
    seconds: float = 0.0
    _started: list[float] = field(default_factory=list)

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def detach(self, engine: Engine) -> None:
        event.remove(engine, "before_cursor_execute", self._before)
        event.remove(engine, "after_cursor_execute", self._after)

    def reset(self) -> None:
        self.statements, self.seconds = 0, 0.0

    def _before(self, *_args: Any) -> None:
        self._started.append(time.perf_counter())

    def _after(self, *_args: Any) -> None:
        self.seconds += time.perf_counter() - self._started.pop()
        self.statements += 1


@contextmanager
def timed_sql(engine: Engine) -> Iterator[SqlTimer]:
    timer = SqlTimer()
    timer.attach(engine)
    try:
        yield timer
    finally:
        timer.detach(engine)


# ---------------------------------------------------------------------------- the environment


def read_proc(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> str:
    cpuinfo = read_proc("/proc/cpuinfo")
    cores = cpuinfo.count("\nprocessor") + cpuinfo.startswith("processor")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", read_proc("/proc/meminfo"), re.M)
    ram = f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB RAM" if mem else "RAM unknown"
    cpu = model.group(1).strip() if model else platform.processor() or "cpu unknown"
    return (
        f"{cores or os.cpu_count()} cores ({cpu}), {ram}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def git_commit() -> str:
    """HEAD, and which files of the code measured (highmark/store, the scheduler) differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout

    commit = git("rev-parse", "--short=12", "HEAD").strip() or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "highmark").splitlines()]
    measured = [p for p in dirty if p.startswith(MEASURED)]
    if not dirty:
        return commit
    return f"{commit}, with uncommitted changes to {len(dirty)} file(s) under highmark/" + (
        f", of the code measured: {', '.join(measured)}" if measured else " (none measured)"
    )


def pg_info(dsn: str) -> tuple[str, dict[str, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings = {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in PG_SETTINGS}  # type: ignore[index]
    return (str(version[0]) if version else "unknown"), settings


@contextmanager
def scratch_database(admin_dsn: str) -> Iterator[tuple[str, URL]]:
    """A new, empty database; dropped afterwards whatever happens."""
    name = f"hm_bench_sched_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = make_url(admin_dsn)
    url = base.set(drivername="postgresql+psycopg", database=name)
    dsn = base.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    try:
        yield dsn, url
    finally:
        db.dispose_all()
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    fields = [int(x) for x in read_proc("/proc/stat").split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds used by one process so far (0 once it is gone)."""
    stat = read_proc(f"/proc/{pid}/stat")
    if not stat:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def backends(dsn: str) -> list[int]:
    """The server processes of highmark's connections to the benchmark's database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [
            int(pid)
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'highmark-control'"
            )
        ]


METER_MIN_SECONDS = 0.5


class CpuMeter:
    """How many cores work other than this measurement kept busy while it ran: the machine's
    busy CPU time less this process's, its children's and its server processes'."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.others: float | None = None  # None: too short to tell

    def _ours(self, pids: list[int]) -> float:
        return time.process_time() + children_cpu() + sum(process_cpu(p) for p in pids)

    def __enter__(self) -> CpuMeter:
        self.pids = backends(self.dsn)
        self.t0, self.cpu0, self.ours0 = time.perf_counter(), machine_cpu(), self._ours(self.pids)
        return self

    def __exit__(self, *_exc: object) -> None:
        seconds = time.perf_counter() - self.t0
        # Connections opened meanwhile count from their start; closed ones are lost (rare).
        pids = sorted(set(self.pids) | set(backends(self.dsn)))
        ours = self._ours(pids) - self.ours0
        if seconds >= METER_MIN_SECONDS:  # (the kernel counts CPU time in 10 ms ticks)
            self.others = max(0.0, machine_cpu() - self.cpu0 - ours) / seconds


@dataclass
class AutoAnalyze:
    """On a server with autovacuum off, ANALYZE the queue's tables when autovacuum would
    (50 rows + 10 % changed): plans cached while ``etl_job_slots`` was empty would otherwise
    stay for ever (see README: finding 5)."""

    enabled: bool = True
    server_does_it: bool = True

    def stand_in(self, dsn: str, analyzed_at: int) -> int:
        if not self.enabled or self.server_does_it:
            return analyzed_at
        slots = count(dsn, SLOTS)
        if slots - analyzed_at <= 50 + analyzed_at // 10:
            return analyzed_at
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ANALYZE etl_job_slots")
            conn.execute("ANALYZE etl_jobs")
        return slots


AUTOANALYZE = AutoAnalyze()


# ---------------------------------------------------------------------------- harness SQL


def vacuum_analyze(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE etl_jobs")
        conn.execute("VACUUM ANALYZE etl_job_slots")


def due_jobs(n: int, fraction: float) -> list[int]:
    """Every 1/fraction-th job, shifted so that the due jobs cover every schedule of the mix."""
    if fraction >= 1:
        return list(range(n))
    if fraction <= 0:
        return []
    step = round(1 / fraction)
    return [k * step + k % step for k in range(n // step)]


def make_due(dsn: str, n: int, fraction: float, down: timedelta | None = None) -> int:
    """Empty the queue; make a ``fraction`` of the jobs due at their latest fire time (or, after
    ``down`` of downtime, at their first fire time since then); the rest due in 1-2 days
    (spread, as real next fire times are). Returns the number of due jobs."""
    due = due_jobs(n, fraction)
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM etl_job_slots")
        conn.execute(
            "UPDATE etl_jobs SET next_due_at = now() + interval '1 day'"
            " + (substr(job_id, 5)::int % 86400) * interval '1 second'"
        )
        now = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        for k, (schedule, zone) in enumerate(SCHEDULES):
            ids = [job_id(i) for i in due if i % len(SCHEDULES) == k]
            if not ids:
                continue
            local = now.astimezone(ZoneInfo(zone or "UTC"))
            fire: datetime = croniter(schedule, local).get_prev(datetime)
            if down:  # the first fire time of the downtime (if it had one)
                fire = min(fire, croniter(schedule, local - down).get_next(datetime))
            conn.execute(
                "UPDATE etl_jobs SET next_due_at = %s WHERE job_id = ANY(%s)",
                (fire.astimezone(UTC), ids),
            )
    vacuum_analyze(dsn)
    return len(due)


def count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute(query).fetchone()[0])  # type: ignore[index]


DUE_NOW = "SELECT count(*) FROM etl_jobs WHERE is_active AND next_due_at <= clock_timestamp()"
SLOTS = "SELECT count(*) FROM etl_job_slots"


def fill_queue(dsn: str, slots: int, n_jobs: int) -> int:
    """Empty the queue and add ``slots`` pending, ready slots: two per job (fewer jobs if there
    are not enough), with distinct fire times over the last day."""
    per_job = 2
    jobs = min(n_jobs, (slots + per_job - 1) // per_job)
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM etl_job_slots")
        conn.execute(
            """
            INSERT INTO etl_job_slots
                (job_id, scheduled_for, status, attempt, missed, not_before, created_at, updated_at)
            SELECT job_id, t, 'pending', 0, 0, t, now(), now()
            FROM (
                SELECT format('job-%%s', lpad(j::text, 6, '0')) AS job_id,
                       now() - interval '1 day' + (k * %(jobs)s + j) * interval '1 second' AS t,
                       k * %(jobs)s + j AS seq
                FROM generate_series(0, %(jobs)s - 1) AS j,
                     generate_series(0, %(per_job)s - 1) AS k
            ) s
            WHERE seq < %(slots)s
            """,
            {"jobs": jobs, "per_job": per_job, "slots": slots},
        )
        count = conn.execute("SELECT count(*) FROM etl_job_slots").fetchone()[0]  # type: ignore[index]
    vacuum_analyze(dsn)
    return int(count)


# ---------------------------------------------------------------------------- 1. sync_jobs


@dataclass
class SyncResult:
    first: float
    unchanged: float
    first_statements: int
    first_sql_seconds: float
    first_repeats: int
    others: float | None  # the most cores other work used during a measurement (None: unknown)


def bench_sync(dsn: str, url: URL, n: int, repeat: int) -> SyncResult:
    defs = definitions(n)
    store = ControlStore.open(url)
    firsts, unchanged, statements, sql_seconds = [], [], [], []
    others: list[float | None] = []
    for r in range(repeat if n <= CHEAP else 1):
        with psycopg.connect(dsn) as conn:
            conn.execute("TRUNCATE etl_jobs CASCADE")
        QUIET.wait()
        with timed_sql(store.engine) as timer, CpuMeter(dsn) as meter:
            t0 = time.perf_counter()
            store.sync_jobs(defs)
            firsts.append(time.perf_counter() - t0)
        others.append(meter.others)
        statements.append(timer.statements)
        sql_seconds.append(timer.seconds)
        log(f"  sync_jobs({n:,}) #{r + 1}, first registration: {firsts[-1]:.2f}s")
    vacuum_analyze(dsn)
    QUIET.wait()
    for r in range(repeat):
        with CpuMeter(dsn) as meter:
            t0 = time.perf_counter()
            store.sync_jobs(defs)
            unchanged.append(time.perf_counter() - t0)
        others.append(meter.others)
        log(f"  sync_jobs({n:,}) #{r + 1}, nothing changed: {unchanged[-1]:.2f}s")
    return SyncResult(
        median(firsts),
        median(unchanged),
        statements[0],
        median(sql_seconds),
        len(firsts),
        most(others),
    )


# ---------------------------------------------------------------------------- 2. find due jobs


@dataclass
class DueResult:
    fraction: float
    down: timedelta | None
    due: int
    first_call: float
    first_call_slots: int
    all_calls: int
    all_seconds: float
    all_repeats: int
    per_job: float
    query: float
    plan: list[str]
    sql_share: float
    problems: list[str]
    others: float | None


def capture(
    store: ControlStore, marker: str, action: Callable[[], Any]
) -> tuple[str, dict[str, Any]]:
    """The first statement containing ``marker`` that ``action`` sends, with its parameters."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def listener(_c: Any, _cur: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if marker in statement and "FOR UPDATE" in statement:
            seen.append((statement, dict(parameters)))

    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        action()
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)
    assert seen, f"no statement with {marker!r} was sent"
    return seen[0]


def _now_params(store: ControlStore, connection: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    now = store._now(connection)
    return {k: now if isinstance(v, datetime) else v for k, v in parameters.items()}


def replay(store: ControlStore, statement: str, parameters: dict[str, Any]) -> float:
    """Run ``statement`` once in its own transaction (rolled back: its row locks go away), with
    every timestamp parameter set to the database's clock now."""
    with store.engine.connect() as connection:
        params = _now_params(store, connection, parameters)
        t0 = time.perf_counter()
        connection.exec_driver_sql(statement, params).all()
        seconds = time.perf_counter() - t0
        connection.rollback()
    return seconds


def explain(store: ControlStore, statement: str, parameters: dict[str, Any]) -> list[str]:
    with store.engine.connect() as connection:
        params = _now_params(store, connection, parameters)
        plan = [
            str(row[0])
            for row in connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        ]
        connection.rollback()
    return plan


def key_plan_lines(plan: list[str]) -> list[str]:
    keep = ("Scan", "Index Cond", "Sort Method", "Rows Removed", "Execution Time")
    return [line.strip() for line in plan if any(k in line for k in keep)]


def bench_due(
    dsn: str, url: URL, n: int, fraction: float, down: timedelta | None, repeat: int
) -> DueResult:
    store = ControlStore.open(url, migrate_schema=False)
    queue = WorkQueue(store)
    first_calls, first_slots, alls, calls, shares = [], [], [], [], []
    others: list[float | None] = []
    problems: list[str] = []
    due = 0
    all_repeats = repeat if round(n * fraction) <= CHEAP else 1
    for r in range(repeat):
        due = make_due(dsn, n, fraction, down)
        QUIET.wait()
        with timed_sql(store.engine) as timer, CpuMeter(dsn) as meter:
            t0 = time.perf_counter()
            returned = len(queue.enqueue_due())
            first_calls.append(time.perf_counter() - t0)
        others.append(meter.others)
        first_slots.append(count(dsn, SLOTS))
        shares.append(timer.seconds / first_calls[-1])
        if returned != first_slots[-1]:
            problems.append(f"enqueue_due() returned {returned} for {first_slots[-1]} new slots")
        if r < all_repeats:
            due = make_due(dsn, n, fraction, down)
            QUIET.wait()
            seconds, number, analyzed = 0.0, 0, 0
            with CpuMeter(dsn) as meter:
                while True:  # as workers poll: until a call finds nothing due
                    number += 1
                    t0 = time.perf_counter()
                    queue.enqueue_due()
                    seconds += time.perf_counter() - t0
                    if not count(dsn, DUE_NOW):
                        break
                    analyzed = AUTOANALYZE.stand_in(dsn, analyzed)
            others.append(meter.others)
            alls.append(seconds)
            calls.append(number)
            # (A */5 job may fall due again meanwhile: count jobs, not slots.)
            jobs_done = count(dsn, "SELECT count(DISTINCT job_id) FROM etl_job_slots")
            if jobs_done != due:
                problems.append(f"slots for {jobs_done} jobs, {due} were due")
        log(
            f"  {n:,} jobs, {due:,} due #{r + 1}: one call {first_calls[-1]:.3f}s "
            f"({first_slots[-1]} slots)"
            + (f", all {alls[-1]:.2f}s in {calls[-1]} calls" if r < all_repeats else "")
        )
    # The due-jobs query alone, exactly as enqueue_due sends it.
    make_due(dsn, n, fraction, down)
    statement, parameters = capture(store, "FROM etl_jobs", queue.enqueue_due)
    make_due(dsn, n, fraction, down)
    QUIET.wait()
    times = [replay(store, statement, parameters) for _ in range(QUERY_REPEAT)]
    plan = explain(store, statement, parameters)
    all_seconds = median(alls)
    return DueResult(
        fraction=fraction,
        down=down,
        due=due,
        first_call=median(first_calls),
        first_call_slots=first_slots[0],
        all_calls=calls[0],
        all_seconds=all_seconds,
        all_repeats=all_repeats,
        per_job=all_seconds / due if due else 0.0,
        query=median(times),
        plan=key_plan_lines(plan),
        sql_share=median(shares),
        problems=sorted(set(problems)),
        others=most(others),
    )


# ---------------------------------------------------------------------------- 3. claims


@dataclass
class ClaimerReport:
    worker_id: str
    claims: list[tuple[str, str, int]]
    claim_times: list[float]  # perf_counter (system-wide monotonic clock) after each claim call
    claim_calls: int
    empty_calls: int
    lost_finishes: int
    seconds: float
    claim_latency: list[float]
    finish_latency: list[float]
    statements: int
    sql_seconds: float


# The candidate fix tried by --try-ready-index: a partial index on the ready slots in the order
# claim() takes them, and a redundant conjunct that lets PostgreSQL prove claim()'s OR-ed WHERE
# clause implies the index predicate (without it the planner never picks the partial index).
READY_STATUSES = "('pending', 'retry_wait', 'claimed')"
CANDIDATE_INDEX = (
    "CREATE INDEX bench_candidate_ready ON etl_job_slots (not_before) "
    f"WHERE status IN {READY_STATUSES}"
)


def add_conjunct(statement: str) -> str:
    if "FROM etl_job_slots" not in statement or "SKIP LOCKED" not in statement:
        return statement
    head, where = statement.split("\nWHERE ", 1)
    condition, tail = where.split(" ORDER BY ", 1)
    return (
        f"{head}\nWHERE etl_job_slots.status IN {READY_STATUSES} AND ({condition}) ORDER BY {tail}"
    )


def rewrite_claims(engine: Engine) -> None:
    def listener(
        _c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
    ) -> tuple[str, Any]:
        return add_conjunct(statement), parameters

    event.listen(engine, "before_cursor_execute", listener, retval=True)


def claimer(
    url: str, worker_id: str, batch: int, candidate: bool, start: Barrier, results: Any
) -> None:
    """One claimer process: claim a batch, finish each claim done, until nothing is pending."""
    store = ControlStore.open(make_url(url), migrate_schema=False)
    queue = WorkQueue(store)
    if candidate:
        rewrite_claims(store.engine)
    store.now()  # connected before the start
    timer = SqlTimer()
    timer.attach(store.engine)
    report = ClaimerReport(worker_id, [], [], 0, 0, 0, 0.0, [], [], 0, 0.0)
    start.wait()
    t0 = time.perf_counter()
    while True:
        c0 = time.perf_counter()
        claims = queue.claim(worker_id, batch, LEASE)
        c1 = time.perf_counter()
        report.claim_calls += 1
        report.claim_latency.append(c1 - c0)
        if not claims:
            report.empty_calls += 1
            if pending(store) == 0:
                break
            continue
        for claim in claims:
            f0 = time.perf_counter()
            if not queue.finish(worker_id, claim, SlotStatus.DONE, run_id=None):
                report.lost_finishes += 1
            report.finish_latency.append(time.perf_counter() - f0)
            report.claims.append(_key(claim))
            report.claim_times.append(c1)
    report.seconds = time.perf_counter() - t0
    timer.detach(store.engine)
    report.statements, report.sql_seconds = timer.statements, timer.seconds
    results.put(report)


def _key(claim: Claim) -> tuple[str, str, int]:
    return claim.job_id, claim.scheduled_for.isoformat(), claim.attempt


def pending(store: ControlStore) -> int:
    with store.engine.connect() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT count(*) FROM etl_job_slots WHERE status IN ('pending', 'retry_wait')"
            ).scalar_one()
        )


@dataclass
class ClaimResult:
    workers: int
    slots: int
    seconds: float
    rate: float
    per_worker: list[float]
    start_rate: float
    end_rate: float
    claim_p50: float
    finish_p50: float
    statements_per_claim: float
    sql_share: float
    empty_calls: int
    problems: list[str]
    cpu_busy: float  # cores busy on the machine during the drain
    cpu_other: float  # of which not the claimers, their server processes or this one
    rates: list[float] = field(default_factory=list)  # every repetition's


QUIET_CORES = 0.3  # the machine counts as quiet when everything else uses less CPU than this


@dataclass
class Quiet:
    """Waits for other work on a shared machine to stop before each measurement."""

    limit: float
    waited: float = 0.0
    gave_up: int = 0

    def wait(self) -> None:
        if self.limit <= 0:
            return
        t0 = time.perf_counter()
        while True:
            cpu0 = machine_cpu()
            time.sleep(1.0)
            busy = machine_cpu() - cpu0
            if busy < QUIET_CORES:
                break
            if time.perf_counter() - t0 > self.limit:
                log(f"  the machine is still busy ({busy:.1f} cores); measuring anyway")
                self.gave_up += 1
                break
            if time.perf_counter() - t0 < 1.5:
                log(f"  waiting for the machine to be quiet ({busy:.1f} cores busy)")
        self.waited += time.perf_counter() - t0


QUIET = Quiet(0.0)


def drain(
    dsn: str, url: URL, workers: int, slots: int, n_jobs: int, batch: int, candidate: bool
) -> ClaimResult:
    filled = fill_queue(dsn, slots, n_jobs)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX IF EXISTS bench_candidate_ready")
        if candidate:
            conn.execute(CANDIDATE_INDEX)
    QUIET.wait()
    db.dispose_all()  # no pooled connection may cross the fork
    context = multiprocessing.get_context("fork")
    start = context.Barrier(workers + 1)
    results = context.Queue()
    url_text = url.render_as_string(hide_password=False)
    processes = [
        context.Process(
            target=claimer, args=(url_text, f"bench-{w}", batch, candidate, start, results)
        )
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    backends: dict[int, float] = {}  # the claimers' server processes: CPU seconds used
    with psycopg.connect(dsn, autocommit=True) as monitor:

        def sample() -> None:
            for (pid,) in monitor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'highmark-control'"
            ):
                backends[pid] = process_cpu(pid) or backends.get(pid, 0.0)

        start.wait(timeout=60)
        t0 = time.perf_counter()
        cpu0, children0, own0 = machine_cpu(), children_cpu(), time.process_time()
        sample()
        backends0 = dict(backends)
        reports: list[ClaimerReport] = []
        while len(reports) < workers:
            try:
                reports.append(results.get(timeout=0.25))
            except queue_module.Empty:
                sample()
                if time.perf_counter() - t0 > 3600:
                    raise SystemExit("the claimers did not finish within an hour") from None
        seconds = time.perf_counter() - t0
        sample()
        for process in processes:
            process.join()
        cpu = machine_cpu() - cpu0
        ours = (
            children_cpu()
            - children0
            + time.process_time()
            - own0
            + sum(v - backends0.get(k, 0.0) for k, v in backends.items())
        )
    problems = verify(dsn, filled, reports)
    problems += [f"claimer exited {p.exitcode}" for p in processes if p.exitcode]
    claimed = sum(len(r.claims) for r in reports)
    times = sorted(t for r in reports for t in r.claim_times)
    quarter = max(2, len(times) // 4)

    def rate_between(a: int, b: int) -> float:
        span = times[b - 1] - times[a] if b - a > 1 else 0.0
        return (b - a) / span if span > 0 else float("nan")

    return ClaimResult(
        workers=workers,
        slots=filled,
        seconds=seconds,
        rate=claimed / seconds,
        per_worker=[len(r.claims) / r.seconds for r in reports],
        start_rate=rate_between(0, min(quarter, len(times))),
        end_rate=rate_between(max(0, len(times) - quarter), len(times)),
        claim_p50=median([x for r in reports for x in r.claim_latency]),
        finish_p50=median([x for r in reports for x in r.finish_latency] or [0.0]),
        statements_per_claim=sum(r.statements for r in reports) / max(claimed, 1),
        sql_share=sum(r.sql_seconds for r in reports) / sum(r.seconds for r in reports),
        empty_calls=sum(r.empty_calls for r in reports),
        problems=problems,
        cpu_busy=cpu / seconds,
        cpu_other=max(0.0, cpu - ours) / seconds,
    )


def verify(dsn: str, filled: int, reports: list[ClaimerReport]) -> list[str]:
    """Every slot claimed exactly once: by the workers' own accounts and by the database's."""
    problems = []
    claimed = [c for r in reports for c in r.claims]
    twice = [c for c, k in Counter((c[0], c[1]) for c in claimed).items() if k > 1]
    if twice:
        problems.append(f"{len(twice)} slot(s) claimed more than once, e.g. {twice[0]}")
    if len(claimed) != filled:
        problems.append(f"{len(claimed)} claims for {filled} slots")
    if any(c[2] != 1 for c in claimed):
        problems.append("a claim with attempt != 1")
    lost = sum(r.lost_finishes for r in reports)
    if lost:
        problems.append(f"{lost} finish() call(s) found the claim gone")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT status, attempt, worker_id, count(*) FROM etl_job_slots GROUP BY 1, 2, 3"
        ).fetchall()
        in_db = {
            (job, at.isoformat())
            for job, at in conn.execute("SELECT job_id, scheduled_for FROM etl_job_slots")
        }
        lease_left = conn.execute(
            "SELECT count(*) FROM etl_job_slots WHERE lease_expires_at IS NOT NULL"
        ).fetchone()[0]  # type: ignore[index]
    if {(c[0], c[1]) for c in claimed} != in_db:
        problems.append("the claimed slots are not the slots in the table")
    by_worker = Counter(r.worker_id for r in reports for _ in r.claims)
    for status, attempt, worker, number in rows:
        if status != SlotStatus.DONE or attempt != 1:
            problems.append(f"{number} slot(s) {status} at attempt {attempt} (worker {worker})")
        elif by_worker.get(worker) != number:
            problems.append(
                f"the table says {worker} did {number}, it says {by_worker.get(worker)}"
            )
    if sum(r[3] for r in rows) != filled:
        problems.append(f"{sum(r[3] for r in rows)} slots in the table, {filled} expected")
    if lease_left:
        problems.append(f"{lease_left} slot(s) still hold a lease")
    return problems


@dataclass
class ClaimSuite:
    candidate: bool
    results: list[ClaimResult]
    plan: list[str]
    query: float


def bench_claims(
    dsn: str, url: URL, n: int, args: argparse.Namespace, variants: list[bool]
) -> list[ClaimSuite]:
    """Drains for every worker count and variant, repetitions interleaved (so that a disturbance
    of the machine hits them alike); then, per variant, claim()'s query alone and its plan."""
    runs: dict[bool, list[ClaimResult]] = {v: [] for v in variants}
    for r in range(args.repeat):
        for workers in args.workers:
            for candidate in variants:
                label = " (candidate index)" if candidate else ""
                log(f"  {workers} claimer(s) drain {args.slots:,} slots{label} #{r + 1}")
                result = drain(dsn, url, workers, args.slots, n, args.batch, candidate)
                log(
                    f"    {result.rate:,.0f} claims/s in {result.seconds:.1f}s, "
                    f"{result.cpu_busy:.1f} cores busy ({result.cpu_other:.2f} by others)"
                    + (f"; FAILED: {result.problems}" if result.problems else "; verified")
                )
                runs[candidate].append(result)
    suites = []
    store = ControlStore.open(url, migrate_schema=False)
    for candidate in variants:
        fill_queue(dsn, args.slots, n)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP INDEX IF EXISTS bench_candidate_ready")
            if candidate:
                conn.execute(CANDIDATE_INDEX)
        statement, parameters = capture(
            store, "FROM etl_job_slots", lambda: WorkQueue(store).claim("plan", args.batch, LEASE)
        )
        if candidate:
            statement = add_conjunct(statement)
        fill_queue(dsn, args.slots, n)
        QUIET.wait()
        query = median([replay(store, statement, parameters) for _ in range(QUERY_REPEAT)])
        plan = key_plan_lines(explain(store, statement, parameters))
        suites.append(ClaimSuite(candidate, median_runs(runs[candidate]), plan, query))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX IF EXISTS bench_candidate_ready")
    return suites


def median_runs(runs: list[ClaimResult]) -> list[ClaimResult]:
    """Per worker count, the run with the median rate; a failed run anywhere is kept instead."""
    out = []
    for workers in dict.fromkeys(r.workers for r in runs):
        same = [r for r in runs if r.workers == workers]
        failed = [r for r in same if r.problems]
        chosen = failed[0] if failed else sorted(same, key=lambda r: r.rate)[len(same) // 2]
        chosen.rates = [r.rate for r in same]
        out.append(chosen)
    return out


# ---------------------------------------------------------------------------- profile


def profile(dsn: str, url: URL, n: int, batch: int) -> str:
    """cProfile of one enqueue_due() call (all jobs due) and of 2,000 claim+finish cycles."""
    out = io.StringIO()
    store = ControlStore.open(url, migrate_schema=False)
    queue = WorkQueue(store)

    def run(title: str, fn: Callable[[], Any]) -> None:
        QUIET.wait()
        profiler = cProfile.Profile()
        profiler.enable()
        fn()
        profiler.disable()
        out.write(f"\n#### {title}\n\n```\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(12)
        out.write("```\n")

    make_due(dsn, n, 1.0)
    run(f"one enqueue_due() call, {n:,} jobs all due", queue.enqueue_due)
    make_due(dsn, n, 0.01, timedelta(days=1))
    run(f"one enqueue_due() call, {n:,} jobs, 1 % due since a day", queue.enqueue_due)
    fill_queue(dsn, 2000, n)

    def cycles() -> None:
        while claims := queue.claim("profile", batch, LEASE):
            for claim in claims:
                queue.finish("profile", claim, SlotStatus.DONE, run_id=None)

    run(f"claim({batch}) + finish, 1 process, 2,000 slots", cycles)
    text = out.getvalue()
    # Keep the report readable: drop pstats' preamble and absolute paths.
    text = re.sub(r"^\s*(Ordered by|List reduced).*\n", "", text, flags=re.M)
    text = re.sub(r"\n{3,}", "\n\n", text)
    for prefix in (str(REPO) + "/", sys.prefix + "/", sys.base_prefix + "/"):
        text = text.replace(prefix, "")
    return text


# ---------------------------------------------------------------------------- the report


@dataclass
class Results:
    syncs: dict[int, SyncResult] = field(default_factory=dict)
    dues: dict[int, list[DueResult]] = field(default_factory=dict)
    claims_at: int = 0
    claims: list[ClaimSuite] = field(default_factory=list)
    profile: str = ""

    @property
    def problems(self) -> list[str]:
        out = [p for results in self.dues.values() for d in results for p in d.problems]
        return out + [p for s in self.claims for c in s.results for p in c.problems]


def scenario(d: DueResult) -> str:
    text = f"{d.due:,} ({d.fraction:.0%})"
    return text + (f", due since {d.down.days} day ago" if d.down else "")


def summary(results: Results) -> list[str]:
    """The headline table: one column per job count."""
    ns = sorted(set(results.syncs) | set(results.dues))
    rows: list[tuple[str, dict[int, str]]] = []
    if results.syncs:
        rows.append(
            (
                "register the jobs (first `sync_jobs`)",
                {n: fmt_s(s.first) for n, s in results.syncs.items()},
            )
        )
        rows.append(
            (
                "re-sync, nothing changed (every start)",
                {n: fmt_s(s.unchanged) for n, s in results.syncs.items()},
            )
        )
    for label, fraction, field_name in [
        ("find due jobs, none due: one `enqueue_due()` (an idle poll)", 0.0, "first_call"),
        ("find due jobs, 1 % due: the due-jobs query alone", 0.01, "query"),
        ("find due jobs, 1 % due: one `enqueue_due()`", 0.01, "first_call"),
        ("find due jobs, 100 % due: one `enqueue_due()` (500 jobs)", 1.0, "first_call"),
        ("find due jobs, 100 % due: enqueue them all", 1.0, "all_seconds"),
    ]:
        cells = {
            n: fmt_s(getattr(d, field_name))
            for n, dues in results.dues.items()
            for d in dues
            if d.fraction == fraction and d.down is None
        }
        if cells:
            rows.append((label, cells))
    for suite in results.claims:
        if suite.candidate:
            continue
        for c in suite.results:
            rows.append((
                f"claims/s, {c.workers} worker(s), {c.slots:,} slots",
                {results.claims_at: f"{c.rate:,.0f}" + ("" if not c.problems else " FAILED")},
            ))  # fmt: skip
    ns = sorted(set(ns) | {n for _, cells in rows for n in cells})
    out = ["| | " + " | ".join(f"{n:,} jobs" for n in ns) + " |", "|---|" + "---:|" * len(ns)]
    for label, cells in rows:
        out.append(f"| {label} | " + " | ".join(cells.get(n, "—") for n in ns) + " |")
    return out


def report(
    args: argparse.Namespace,
    command: str,
    started: datetime,
    pg_version: str,
    settings: dict[str, str],
    results: Results,
    elapsed: float,
    load: str,
) -> str:
    lines = [
        "# Scheduler benchmark: results",
        "",
        f"Made by `{command}`; bench/README.md says what each number is.",
        "",
        "| | |",
        "|---|---|",
        f"| date | {started:%Y-%m-%d %H:%M} UTC |",
        f"| machine | {machine()}; load average at the start {load} |",
        f"| PostgreSQL | {pg_version} on the same machine; "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
        + " |",
        f"| highmark commit | {git_commit()} |",
        f"| repetitions | medians of {args.repeat} (registering, or enqueueing, more than "
        f"{CHEAP:,} jobs: once) |",
        f"| whole run | {elapsed / 60:.1f} min, of which {QUIET.waited / 60:.1f} min waiting for "
        f"other work on the machine to stop (gave up waiting {QUIET.gave_up} time(s)) |",
        "",
        "## Summary",
        "",
        *summary(results),
    ]
    if results.syncs:
        lines += [
            "",
            "## Registering jobs (`ControlStore.sync_jobs`)",
            "",
            "| jobs | first registration | statements | in SQL | re-sync, nothing changed "
            "| cores used by others (most) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for n, s in results.syncs.items():
            once = "" if s.first_repeats > 1 else " (once)"
            lines.append(
                f"| {n:,} | {fmt_s(s.first)}{once} | {s.first_statements:,} | "
                f"{s.first_sql_seconds / s.first:.0%} | {fmt_s(s.unchanged)} "
                f"| {fmt_cores(s.others)} |"
            )
    if results.dues:
        lines += [
            "",
            f"## Finding due jobs (`WorkQueue.enqueue_due`, ENQUEUE_BATCH={ENQUEUE_BATCH})",
            "",
            "| jobs | due | one call | slots it made | in SQL | all due: time | calls "
            "| per due job | due-jobs query alone | cores used by others (most) |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n, dues in results.dues.items():
            for d in dues:
                once = "" if d.all_repeats > 1 else " (once)"
                lines.append(
                    f"| {n:,} | {scenario(d)} | {fmt_s(d.first_call)} | {d.first_call_slots:,} "
                    f"| {d.sql_share:.0%} | {fmt_s(d.all_seconds)}{once} | {d.all_calls} | "
                    f"{fmt_s(d.per_job) if d.due else '—'} | {fmt_s(d.query)} "
                    f"| {fmt_cores(d.others)} |"
                )
        lines += ["", "Key lines of `EXPLAIN (ANALYZE, BUFFERS)` of the due-jobs query:", ""]
        for n, dues in results.dues.items():
            for d in dues:
                if d.down:
                    continue  # the same query as without downtime
                lines.append(f"- {n:,} jobs, {d.fraction:.0%} due:")
                lines += [f"  - `{line}`" for line in d.plan]
    for suite in results.claims:
        title = "with the candidate ready-slots index (experiment)" if suite.candidate else ""
        lines += [
            "",
            f"## Claims per second (`WorkQueue.claim` + `finish`) {title}".rstrip(),
            "",
            f"{results.claims_at:,} jobs. Each claimer process loops `claim(worker, {args.batch}, "
            "lease)`, then `finish(…, 'done')` for every claim, until nothing is pending. "
            f"claim()'s ready-slots query alone, on the full queue: {fmt_s(suite.query)}; "
            "its plan:",
            "",
            *[f"- `{line}`" for line in suite.plan],
            "",
            "| slots | workers | time | claims/s (every rep) | per worker | first quarter "
            "| last quarter | claim() p50 | finish() p50 | statements per claim | in SQL "
            "| cores busy (by others) | verified |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for c in suite.results:
            ok = "FAILED: " + "; ".join(c.problems) if c.problems else "yes"
            reps = ", ".join(f"{x:,.0f}" for x in c.rates)
            per_worker = " / ".join(f"{x:,.0f}" for x in c.per_worker)
            lines.append(
                f"| {c.slots:,} | {c.workers} | {fmt_s(c.seconds)} | **{c.rate:,.0f}** ({reps}) "
                f"| {per_worker} | {c.start_rate:,.0f} | {c.end_rate:,.0f} "
                f"| {fmt_s(c.claim_p50)} | {fmt_s(c.finish_p50)} | {c.statements_per_claim:.2f} "
                f"| {c.sql_share:.0%} | {c.cpu_busy:.2f} ({c.cpu_other:.2f}) | {ok} |"
            )
    if results.profile:
        lines += [
            "",
            f"## Profile (cProfile, {results.claims_at:,} jobs, top functions by own time)",
            results.profile.rstrip(),
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- main


def int_list(value: str) -> list[int]:
    return [int(v.replace("_", "")) for v in value.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int_list, default=[10_000, 100_000], help="job counts")
    parser.add_argument("--workers", type=int_list, default=[1, 2, 4], help="claimer processes")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL DSN to create databases with")
    parser.add_argument("--slots", type=int, default=20_000, help="slots each drain starts with")
    parser.add_argument("--batch", type=int, default=8, help="claim(n=…) of each claimer")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (medians)")
    parser.add_argument(
        "--claims-at", type=int, help="measure claims with this many jobs (default: the most)"
    )
    parser.add_argument(
        "--try-ready-index",
        action="store_true",
        help="also measure claims with a candidate index for claim()'s query (experiment)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=300,
        help="before each measurement, wait up to this many seconds for other work on the "
        f"machine to use less than {QUIET_CORES} cores (0: do not wait)",
    )
    parser.add_argument(
        "--no-autoanalyze",
        dest="autoanalyze",
        action="store_false",
        help="when the server's autovacuum is off, do not ANALYZE in its stead",
    )
    parser.add_argument(
        "--parts",
        type=lambda v: set(v.split(",")),
        default=set(PARTS),
        help=f"what to measure (default: {','.join(PARTS)})",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "RESULTS-scheduler.md", help="report file"
    )
    args = parser.parse_args(argv)
    QUIET.limit = args.quiet_wait
    if args.parts - set(PARTS):
        parser.error(f"--parts: choose among {', '.join(PARTS)}")
    shown = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    command = f".venv/bin/python bench/scheduler.py {shown}".strip()
    started = datetime.now(UTC)
    load = " / ".join(read_proc("/proc/loadavg").split()[:3]) + " (1 / 5 / 15 min)"
    t_start = time.perf_counter()
    pg_version, settings = pg_info(args.pg)
    AUTOANALYZE.enabled = args.autoanalyze
    AUTOANALYZE.server_does_it = settings.get("autovacuum") == "on"
    results = Results(claims_at=args.claims_at or max(args.jobs))
    for n in sorted(set(args.jobs) | {results.claims_at}):
        with scratch_database(args.pg) as (dsn, url):
            if "sync" in args.parts:
                log(f"{n:,} jobs: sync_jobs")
                results.syncs[n] = bench_sync(dsn, url, n, args.repeat)
            else:
                ControlStore.open(url).sync_jobs(definitions(n))
            if "due" in args.parts:
                results.dues[n] = []
                for fraction, down in DUE_SCENARIOS:
                    log(
                        f"{n:,} jobs: enqueue_due, {fraction:.0%} due"
                        + (f" since {down}" if down else "")
                    )
                    results.dues[n].append(bench_due(dsn, url, n, fraction, down, args.repeat))
            if n != results.claims_at:
                continue
            if "claims" in args.parts:
                log(f"{n:,} jobs: claims")
                variants = [False, True] if args.try_ready_index else [False]
                results.claims = bench_claims(dsn, url, n, args, variants)
            if "profile" in args.parts:
                log(f"{n:,} jobs: profile")
                results.profile = profile(dsn, url, n, args.batch)
    elapsed = time.perf_counter() - t_start
    text = report(args, command, started, pg_version, settings, results, elapsed, load)
    print(text)
    args.out.write_text(text)
    log(f"wrote {args.out}")
    for problem in results.problems:
        log(f"FAILED: {problem}")
    return 1 if results.problems else 0


if __name__ == "__main__":
    sys.exit(main())
