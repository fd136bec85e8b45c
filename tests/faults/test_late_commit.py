"""A source transaction held open across a run: its rows must arrive in a later run.

A row is stamped when its transaction writes it but becomes visible only at commit. A run that
read "up to now" would move the mark past it for good (shared/reliability-notes.md §1.1). These
tests hold real transactions open on PostgreSQL and MariaDB while highmark runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from highmark import Project, RunStatus
from highmark.window import CLOCK_MARGIN
from tests.helpers import snapshot

PG_TABLE = """
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    note text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
)"""
MYSQL_TABLE = """
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    note varchar(100) NOT NULL,
    updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    deleted_at datetime(6) NULL
)"""


def _project(write_project: Callable[..., Path], url: str) -> Project:
    job = {
        "load_type": "incremental",
        "source": {"connection": "db", "table": "orders"},
        "target": {"connection": "db", "table": "orders_copy"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "batch_size": 2,
    }
    return Project.load(write_project(control=url, connections={"db": url}, jobs={"sync": job}))


def _insert(engine: Engine, *ids: int) -> None:
    with engine.begin() as conn:
        for i in ids:
            conn.execute(text("INSERT INTO orders (id, note) VALUES (:i, 'committed')"), {"i": i})


@contextmanager
def _open_transaction(engine: Engine) -> Iterator[Connection]:
    conn = engine.connect()
    conn.begin()
    try:
        yield conn
    finally:
        if conn.in_transaction():
            conn.rollback()
        conn.close()


def settle(engine: Engine) -> None:
    """Wait until the source clock is past every stamp by highmark's one-second margin."""
    now_sql = "SELECT now()" if engine.dialect.name == "postgresql" else "SELECT UTC_TIMESTAMP(6)"
    with engine.connect() as conn:
        newest = conn.execute(text("SELECT max(updated_at) FROM orders")).scalar_one()
        target = newest + CLOCK_MARGIN + timedelta(milliseconds=50)
        while True:
            now = conn.execute(text(now_sql)).scalar_one()
            conn.rollback()
            if now >= target:
                return
            time.sleep(0.05)


def _open_elsewhere(engine: Engine) -> int:
    """Transactions innodb_trx lists besides this session's own; the poll rests 0.15 s first,
    because InnoDB refreshes that cache only after it went unread for 0.1 s."""
    time.sleep(0.15)
    with engine.connect() as conn:
        conn.execute(text("START TRANSACTION WITH CONSISTENT SNAPSHOT"))
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM information_schema.innodb_trx"
                    " WHERE trx_mysql_thread_id <> CONNECTION_ID()"
                )
            ).scalar_one()
        )


def wait_until_listed(engine: Engine) -> None:
    if engine.dialect.name == "mysql":
        while not _open_elsewhere(engine):
            pass


def wait_until_clear(engine: Engine) -> None:
    if engine.dialect.name == "mysql":
        while _open_elsewhere(engine):
            pass


def _ids(engine: Engine, table: str) -> list[int]:
    return [row["id"] for row in snapshot(engine, table)]


@pytest.mark.parametrize("backend_name", ["postgresql", "mysql"])
def test_row_of_a_transaction_open_during_the_run_arrives_later(
    backend_name: str,
    request: pytest.FixtureRequest,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    url = request.getfixturevalue("pg_url" if backend_name == "postgresql" else "mysql_url")
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text(PG_TABLE if backend_name == "postgresql" else MYSQL_TABLE))
    _insert(engine, 1, 2, 3)
    settle(engine)
    project = _project(write_project, url)
    assert project.run("sync").rows_written == 3

    with _open_transaction(engine) as writer:
        # Stamped now, visible only at commit.
        writer.execute(text("INSERT INTO orders (id, note) VALUES (100, 'late')"))
        _insert(engine, 101)  # committed, stamped after the open transaction started
        wait_until_listed(engine)
        settle(engine)  # even a second later, the open transaction holds the bound
        held = project.run("sync")
        assert held.run_status is RunStatus.SUCCESS, held.error_message
        assert held.upper_bound_reason is not None and "held by" in held.upper_bound_reason
        assert 101 not in _ids(engine, "orders_copy")  # the bound stops below the open transaction
        writer.commit()

    settle(engine)
    wait_until_clear(engine)
    after = project.run("sync")
    assert after.run_status is RunStatus.SUCCESS, after.error_message
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
    assert sorted(_ids(engine, "orders_copy")) == [1, 2, 3, 100, 101]
    total = sum(r.rows_written for r in project.runs("sync"))
    assert total == 5  # nothing counted twice


def test_postgres_reader_that_writes_later_holds_the_bound(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """A transaction that has only read (no xid yet) still stamps its later rows with its start."""
    engine = engine_for(pg_url)
    with engine.begin() as conn:
        conn.execute(text(PG_TABLE))
    _insert(engine, 1)
    settle(engine)
    project = _project(write_project, pg_url)
    project.run("sync")

    with _open_transaction(engine) as session:
        session.execute(text("SELECT 1"))  # the transaction's now() is fixed here
        _insert(engine, 2)
        settle(engine)
        held = project.run("sync")
        assert held.rows_read == 0 and held.upper_bound_reason is not None
        assert "held by" in held.upper_bound_reason
        session.execute(text("INSERT INTO orders (id, note) VALUES (3, 'late reader')"))
        session.commit()

    settle(engine)
    project.run("sync")
    assert sorted(_ids(engine, "orders_copy")) == [1, 2, 3]
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")


def test_postgres_prepared_transaction_holds_the_mark(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    with engine.connect() as conn:
        if int(conn.execute(text("SHOW max_prepared_transactions")).scalar_one()) == 0:
            pytest.skip("max_prepared_transactions is 0 on this server (.ci/run enables it)")
        conn.execute(text(PG_TABLE))
        conn.commit()
    _insert(engine, 1)
    settle(engine)
    project = _project(write_project, pg_url)
    project.run("sync")
    gid = f"hm_{uuid.uuid4().hex[:12]}"
    # PREPARE and COMMIT PREPARED run outside SQLAlchemy's implicit transaction.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("BEGIN"))
        conn.execute(text("INSERT INTO orders (id, note) VALUES (2, 'prepared')"))
        conn.execute(text(f"PREPARE TRANSACTION '{gid}'"))
        try:
            _insert(engine, 3)
            settle(engine)
            held = project.run("sync")
            assert held.upper_bound_reason is not None and "prepared" in held.upper_bound_reason
            assert held.rows_read == 0  # the mark does not advance past a pending prepared xact
            assert held.notes and any("held back" in n for n in held.notes)
            conn.execute(text(f"COMMIT PREPARED '{gid}'"))
        finally:
            pending = conn.execute(
                text("SELECT count(*) FROM pg_prepared_xacts WHERE gid = :gid"), {"gid": gid}
            ).scalar()
            if pending:
                conn.execute(text(f"ROLLBACK PREPARED '{gid}'"))
    settle(engine)
    project.run("sync")
    assert sorted(_ids(engine, "orders_copy")) == [1, 2, 3]
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")


def test_resumed_run_reads_the_window_pinned_by_the_killed_run(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """The bound is pinned in the checkpoint: a resumed run does not re-plan its window."""
    engine = engine_for(pg_url)
    with engine.begin() as conn:
        conn.execute(text(PG_TABLE))
    _insert(engine, *range(1, 7))
    settle(engine)
    project = _project(write_project, pg_url)

    from highmark import CancelToken, Counts, JobSpec, RunRecord

    token = CancelToken()

    class StopAfterFirstBatch:
        def started(self, job: JobSpec, run_id: int, description: str) -> None: ...

        def progressed(self, counts: Counts, batch_number: int, detail: str | None = None) -> None:
            token.cancel("test stop")

        def finished(self, run: RunRecord) -> None: ...

    stopped = project.run("sync", observer=StopAfterFirstBatch(), cancel=token)
    assert stopped.run_status is RunStatus.CANCELLED
    pinned = (project.checkpoint("sync") or {})["window_high"]
    _insert(engine, 7)  # committed after the bound was taken: belongs to the next window
    settle(engine)

    resumed = project.run("sync")
    assert resumed.upper_bound == stopped.upper_bound
    assert resumed.rows_read == 4 and 7 not in _ids(engine, "orders_copy")
    assert pinned is not None
    settle(engine)
    project.run("sync")
    assert snapshot(engine, "orders_copy") == snapshot(engine, "orders")
