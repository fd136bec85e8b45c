"""Real `highmark worker` processes for tests: a project file with short worker settings, workers
started in the background with their log in a file, polling for conditions, the control tables
read back as plain rows.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sqlalchemy import Engine, select, text

from highmark.clock import ensure_utc
from highmark.store.tables import etl_job_runs, etl_job_slots, etl_jobs
from tests.faults.harness import highmark_env

T = TypeVar("T")

WAIT_LIMIT_SECONDS = 60
# Short settings so that leases lapse, retries come and workers drain within seconds.
FAST_WORKER: dict[str, Any] = {
    "poll_interval": "0.1s",
    "heartbeat": "0.5s",
    "lease": "2s",
    "grace": "2s",
}
EVERY_2S = "* * * * * */2"
EVERY_SECOND = "* * * * * *"
# A schedule whose next fire time is far away: its job runs only when a test makes it due.
YEARLY = "0 0 1 1 *"


def write_project(
    path: Path,
    *,
    control: str,
    connections: dict[str, str],
    jobs: dict[str, dict[str, Any]],
    worker: dict[str, Any] | None = None,
) -> Path:
    document: dict[str, Any] = {
        "control": control,
        "connections": connections,
        "worker": {**FAST_WORKER, **(worker or {})},
        "jobs": jobs,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def job(
    source: str = "orders",
    target: str = "orders_copy",
    *,
    schedule: str | None = EVERY_2S,
    connection: str = "db",
    **overrides: Any,
) -> dict[str, Any]:
    """An incremental orders-shaped job on one connection."""
    spec: dict[str, Any] = {
        "load_type": "incremental",
        "source": {"connection": connection, "table": source},
        "target": {"connection": connection, "table": target},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "batch_size": 3,
    }
    if schedule is not None:
        spec["schedule"] = schedule
    spec.update(overrides)
    return spec


class WorkerProcess:
    """A `highmark … worker` (or any other command) in the background, logging to a file."""

    def __init__(self, project: Path, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log_path = log
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "highmark", "--project", str(project), *args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = WAIT_LIMIT_SECONDS) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not exit:\n{self.log()}") from None
        self._log.close()
        return code

    def stop(self, timeout: float = WAIT_LIMIT_SECONDS) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        self._log.close()


class Workers:
    """Starts workers for one test and makes sure none outlives it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[WorkerProcess] = []

    def start(
        self,
        project: Path,
        *args: str,
        env: dict[str, str] | None = None,
        command: str = "worker",
    ) -> WorkerProcess:
        log = self.directory / f"{command}-{len(self.started)}.log"
        worker = WorkerProcess(project, [command, *args], log, env or highmark_env())
        self.started.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.started:
            worker.kill()


def wait_until(
    probe: Callable[[], T],
    what: str,
    *,
    timeout: float = WAIT_LIMIT_SECONDS,
    interval: float = 0.05,
    watch: list[WorkerProcess] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail, with the workers' logs, if it does
    not within ``timeout`` or if a watched worker exits first."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        for worker in watch or []:
            if not worker.alive():
                raise AssertionError(f"worker exited while waiting for {what}:\n{worker.log()}")
        if time.monotonic() > deadline:
            logs = "\n".join(w.log()[-4000:] for w in watch or [])
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(interval)


def runs(engine: Engine, job_id: str | None = None) -> list[dict[str, Any]]:
    """Rows of etl_job_runs, in run_id order."""
    query = select(etl_job_runs).order_by(etl_job_runs.c.run_id)
    if job_id is not None:
        query = query.where(etl_job_runs.c.job_id == job_id)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def slots(engine: Engine, job_id: str | None = None) -> list[dict[str, Any]]:
    """Rows of etl_job_slots, oldest first."""
    query = select(etl_job_slots).order_by(etl_job_slots.c.job_id, etl_job_slots.c.scheduled_for)
    if job_id is not None:
        query = query.where(etl_job_slots.c.job_id == job_id)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def jobs(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {row.job_id: dict(row._mapping) for row in conn.execute(select(etl_jobs))}


def make_due(engine: Engine, job_id: str, seconds_ago: float = 0.0) -> None:
    """Make a job due now (or as if its next fire time passed ``seconds_ago``)."""
    with engine.begin() as conn:
        now = conn.execute(text(_NOW[engine.dialect.name])).scalar_one()
        conn.execute(
            etl_jobs.update()
            .where(etl_jobs.c.job_id == job_id)
            .values(next_due_at=_aware(now) - timedelta(seconds=seconds_ago))
        )


_NOW = {
    "postgresql": "SELECT clock_timestamp()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "sqlite": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
}


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return ensure_utc(value)


def failpoint_env(directory: Path, point: str, nth: int = 1) -> tuple[dict[str, str], Path]:
    """Environment that pauses every forked run at ``point`` (the nth time it is reached in that
    run's process), and the release file; ``<file>.reached`` holds the paused child's pid."""
    release = directory / f"pause-{point}-{nth}"
    env = highmark_env(
        HIGHMARK_FAILPOINT=f"{point}:{nth}:pause", HIGHMARK_FAILPOINT_FILE=str(release)
    )
    return env, release


def reached(release: Path) -> int | None:
    """The pid of the run paused at the failpoint, once one is there."""
    marker = Path(f"{release}.reached")
    if not marker.exists():
        return None
    content = marker.read_text().strip()
    return int(content) if content else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def threads(pid: int) -> int:
    """How many threads ``pid`` has (a run has its main thread, its heartbeat and, until its
    timeout fires, its timeout timer)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


# clock_nanosleep, nanosleep, select/pselect6: what time.sleep waits in.
_SLEEP_SYSCALLS = {"x86_64": {"230", "35", "23"}, "aarch64": {"115", "101", "72"}}


def sleeping(pid: int) -> bool:
    """Is ``pid``'s main thread waiting in time.sleep? (A worker that logged a step and is now
    asleep has finished that step's system calls, e.g. its kill().)"""
    try:
        number = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    except (OSError, IndexError):
        return False
    return number in _SLEEP_SYSCALLS.get(platform.machine(), set())


def terminate_backends(engine: Engine, application_name: str) -> int:
    """pg_terminate_backend every session of this database with ``application_name``."""
    with engine.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :name"
            ),
            {"name": application_name},
        ).scalar_one()
    return int(killed)
