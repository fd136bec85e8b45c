"""The database kills highmark's connection in the middle of a run.

The run is paused right after its first batch committed; the test then terminates the target's (or
the streaming source's) backend from outside and lets the run go on. The run must end ``failed``
and retryable, with the watermark unchanged and the target holding whole batches only (a prefix of
the source in key order); the next run resumes from the checkpoint and completes the copy.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from highmark import Project, RunStatus
from highmark import db as highmark_db
from highmark.models import RunRecord
from tests.conftest import MYSQL_ADMIN_URL
from tests.faults import harness
from tests.faults.invariants import (
    JOB,
    MarkLog,
    assert_nothing_leaked,
    assert_target_equals_source,
    assert_target_is_prefix,
    reaped,
    runs,
    write_job,
)
from tests.helpers import create_orders, insert_orders, order, snapshot

INITIAL, LATER = range(1, 4), range(4, 13)  # then three batches of three


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _poll(engine: Engine, query: str, params: dict[str, str], until: bool) -> None:
    """Poll ``SELECT count(*)…`` until it is nonzero (``until=True``) or zero."""
    deadline = time.monotonic() + harness.WAIT_LIMIT_SECONDS
    while True:
        with engine.connect() as conn:
            if bool(conn.execute(text(query), params).scalar_one()) is until:
                return
        assert time.monotonic() < deadline, f"gave up waiting on {query}"
        time.sleep(0.01)


def _load_initial(path: Path, source: Engine) -> tuple[Project, MarkLog]:
    """Load rows 1-3, add rows 4-12; return the project to watch the job with, and its marks."""
    table = create_orders(source)
    insert_orders(source, table, [order(i) for i in INITIAL])
    assert Project.load(path).run(JOB).run_status is RunStatus.SUCCESS
    # The test's own pooled source/target sessions must not be mistaken for the child's.
    highmark_db.dispose_all()
    insert_orders(source, table, [order(i) for i in LATER])
    project = Project.load(path)
    marks = MarkLog(project)
    assert marks.check() is not None
    return project, marks


def _assert_failed_retryable(
    project: Project, exit_code: int, output: str, marks: MarkLog
) -> RunRecord:
    assert exit_code == 1, output
    before = marks.marks[-1]
    _, failed = runs(project)
    assert failed.run_status is RunStatus.FAILED
    assert failed.error_details is not None
    assert failed.error_details["retryable"] is True, failed.error_details
    assert failed.error_details["error_class"] == "retryable"
    assert failed.error_details["batch_number"] == 2
    assert failed.error_message and failed.error_message in output
    assert marks.check() is not None and marks.marks[-1] == before  # the watermark did not move
    return failed


def _assert_resumes(project: Project, source: Engine, target: Engine, marks: MarkLog) -> None:
    checkpoint = project.checkpoint(JOB)
    assert checkpoint is not None and checkpoint["batch_number"] == 1
    last = project.run(JOB)
    assert last.run_status is RunStatus.SUCCESS, last.error_message
    # Resumed after the failed run's first batch: its six remaining rows only.
    assert (last.rows_read, last.rows_written, last.rows_updated) == (6, 6, 0)
    assert_target_equals_source(source, target)
    mark = marks.check()
    assert mark is not None and mark.last_value_integer == 12
    assert sum(r.rows_written for r in runs(project)) == 12


@pytest.mark.parametrize("role", ["target", "source"])
def test_postgres_backend_terminated_mid_run(
    role: str,
    pg_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    engine = engine_for(pg_url)
    path = write_job(write_project, pg_url)
    project, marks = _load_initial(path, engine)
    backends = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app AND datname = :db"
    )
    params = {"app": f"highmark-{role}", "db": _database(pg_url)}

    pause = harness.Pause(tmp_path, "after_target_commit")
    with reaped(harness.start(path, "run", JOB, env=pause.env)) as process:
        try:
            pause.wait(process)
            with engine.connect() as conn:
                killed = conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                        " FROM pg_stat_activity WHERE application_name = :app AND datname = :db"
                    ),
                    params,
                ).scalar_one()
            assert killed >= 1
            _poll(engine, backends, params, until=False)
        finally:
            pause.release()
        out, err = process.communicate(timeout=harness.WAIT_LIMIT_SECONDS)

    if role == "source" and process.returncode == 0:
        # PostgreSQL to PostgreSQL goes the COPY path: each key range opens its own short source
        # session, so a killed idle session is simply replaced and the run loses nothing.
        assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
        assert_nothing_leaked(project, out, err)
        return
    failed = _assert_failed_retryable(project, process.returncode, out + err, marks)
    assert failed.error_details is not None
    assert failed.error_details["exception_type"] == (
        "DestinationError" if role == "target" else "SourceError"
    )
    assert (failed.rows_read, failed.rows_written) == (3, 3)
    assert assert_target_is_prefix(engine) == 6  # the first run's rows and one whole batch
    _assert_resumes(project, engine, engine, marks)
    assert_nothing_leaked(project, out, err)


@pytest.fixture
def second_mysql_url() -> Iterator[str]:
    """A second MariaDB database, so that highmark's target session is the only one on it."""
    name = f"hm_{uuid.uuid4().hex[:12]}"
    admin = create_engine(MYSQL_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        highmark_db.dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def test_mariadb_target_session_killed_mid_run(
    mysql_url: str,
    second_mysql_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    source = engine_for(mysql_url)
    target = engine_for(second_mysql_url)
    path = write_job(write_project, mysql_url, target_url=second_mysql_url)
    project, marks = _load_initial(path, source)
    target.dispose()
    sessions = (
        "SELECT count(*) FROM information_schema.processlist"
        " WHERE db = :db AND id <> CONNECTION_ID()"
    )
    params = {"db": _database(second_mysql_url)}

    pause = harness.Pause(tmp_path, "after_target_commit")
    with reaped(harness.start(path, "run", JOB, env=pause.env)) as process:
        try:
            pause.wait(process)
            # Nobody but the paused run is connected to the target database: its one session,
            # idle between two batches.
            with source.connect() as conn:
                found = conn.execute(
                    text(
                        "SELECT id, command FROM information_schema.processlist"
                        " WHERE db = :db AND id <> CONNECTION_ID()"
                    ),
                    params,
                ).all()
                assert [row.command for row in found] == ["Sleep"], found
                conn.execute(text(f"KILL {int(found[0].id)}"))
            _poll(source, sessions, params, until=False)
        finally:
            pause.release()
        out, err = process.communicate(timeout=harness.WAIT_LIMIT_SECONDS)

    failed = _assert_failed_retryable(project, process.returncode, out + err, marks)
    assert failed.error_details is not None
    assert failed.error_details["exception_type"] == "DestinationError"
    assert assert_target_is_prefix(source, target) == 6
    _assert_resumes(project, source, target, marks)
    assert_nothing_leaked(project, out, err)
