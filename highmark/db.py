"""Opening databases: one place that turns a connection URL into a configured SQLAlchemy engine.

Every engine hides bound parameters from error messages (they may carry row data), talks UTC to
the server, and on SQLite takes real transactions (``BEGIN``) so that DDL and claims are atomic.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from highmark.config import MAX_PARALLELISM

SQLITE_BUSY_TIMEOUT_SECONDS = 60
CONNECT_TIMEOUT_SECONDS = 10

# What an engine is for decides how SQLite transactions begin: the control store and targets take
# the write lock up front (BEGIN IMMEDIATE: no lock-upgrade deadlocks between processes); sources
# only read. Only the control store, which highmark owns, is switched to WAL.
Role = Literal["control", "source", "target"]

_engines: dict[tuple[str, str], Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: URL, role: Role) -> Engine:
    """A process-wide engine for ``url`` in ``role`` (created on first use)."""
    key = (url.render_as_string(hide_password=False), role)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create_configured_engine(url, role)
            _engines[key] = engine
        return engine


def dispose_all() -> None:
    """Close every pooled connection (tests; before forking a child process)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def create_configured_engine(url: URL, role: Role) -> Engine:
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"hide_parameters": True}
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_SECONDS
        connect_args["check_same_thread"] = False
        kwargs["poolclass"] = NullPool
    elif backend == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        connect_args["options"] = "-c TimeZone=UTC"
        connect_args["application_name"] = f"highmark-{role}"
        # Loaders that read infinity and -infinity instead of refusing them (infinity.py).
        from highmark import infinity

        connect_args["context"] = infinity.adapters()
        # Notice a vanished server within a minute instead of the OS default of two hours.
        connect_args.update(
            keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3
        )
        kwargs["pool_pre_ping"] = True
    elif backend == "mysql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        # Sources stream: give a slow target time to take a batch before the server gives up.
        write_timeout = ", net_write_timeout = 3600" if role == "source" else ""
        connect_args["init_command"] = f"SET time_zone = '+00:00'{write_timeout}"
        if "charset" not in url.query:
            connect_args["charset"] = "utf8mb4"
        if role == "target":
            # LOAD DATA LOCAL, of highmark's own streams only (destinations/mariadb_load.py).
            from highmark.destinations.mariadb_load import guard_local_infile

            connect_args["local_infile"] = guard_local_infile()
        kwargs["pool_pre_ping"] = True
        if role == "control":
            # READ COMMITTED, as on PostgreSQL: REPEATABLE READ's gap locks deadlock concurrent
            # first watermark inserts of different jobs, and enqueuing against lease renewals.
            kwargs["isolation_level"] = "READ COMMITTED"
    if backend != "sqlite":
        # A parallel load holds a source and a target connection per range at once, besides
        # the run's own (config.MAX_PARALLELISM); the default 5 + 10 would run out.
        kwargs["max_overflow"] = 2 * MAX_PARALLELISM
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    if backend == "sqlite":
        _make_sqlite_transactional(engine, role)
    return engine


def _make_sqlite_transactional(engine: Engine, role: Role) -> None:
    """Let SQLAlchemy, not pysqlite, decide where transactions begin (SQLAlchemy's recipe)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        if role == "control" and engine.url.database not in (None, "", ":memory:"):
            _enable_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if role == "source" else "BEGIN IMMEDIATE")


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL (readers never block the writer). SQLite answers this PRAGMA "locked" at
    once, ignoring the busy timeout, while another connection writes: wait for it by hand."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
