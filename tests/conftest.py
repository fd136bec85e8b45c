"""Test fixtures: a real database per test on SQLite, PostgreSQL and MariaDB.

PostgreSQL (127.0.0.1:5432, user postgres) and MariaDB (127.0.0.1:3306, root) must be running;
`.ci/run` starts them. Each test gets its own database, created here and dropped after.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from highmark import db as highmark_db
from highmark import infinity

PG_ADMIN_URL = os.environ.get(
    "HIGHMARK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN_URL = os.environ.get("HIGHMARK_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/")
BACKENDS = ["sqlite", "postgresql", "mysql"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every test that touches MariaDB on one xdist worker (see scripts/test.sh).

    MariaDB's upper bound reads information_schema.innodb_trx, which is server-wide: a transaction
    another test holds open in another database holds this test's bound back, and sessions that
    poll innodb_trx keep its cache stale. PostgreSQL's bound is per database, SQLite's per file, so
    those tests run side by side, except CDC: replication slot names are cluster-wide, so the
    PostgreSQL CDC tests share one worker too. Tests marked ``serial`` (a timing-sensitive fleet, a
    server restart) are left to a second phase that runs alone.
    """
    for item in items:
        names = item.nodeid.lower() + " " + " ".join(getattr(item, "fixturenames", ()))
        if "mysql" in names or "mariadb" in names:
            item.add_marker(pytest.mark.xdist_group("mariadb"))
        elif item.nodeid.startswith("tests/cdc/"):
            item.add_marker(pytest.mark.xdist_group("postgresql-cdc"))


def _name() -> str:
    return f"hm_{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    """highmark caches engines per URL; close them so that test databases can be dropped."""
    yield
    highmark_db.dispose_all()


@pytest.fixture(autouse=True)
def _secrets_of_this_test_only() -> Iterator[None]:
    """highmark's secret registry lives as long as the process: a secret one test registers
    (the too-short API token `short`, say) would be masked in every later test of the same
    worker (a constraint named `summary_short` read `summary_***`)."""
    from highmark import redact

    with redact._lock:
        before = set(redact._secrets)
    yield
    with redact._lock:
        redact._secrets.clear()
        redact._secrets.update(before)


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = _name()
    # pre-ping: a test may restart the server (tests/cdc/test_server_restart.py) under the pool
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        highmark_db.dispose_all()
        with admin.connect() as conn:
            _drop_slots(conn, name)
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _drop_slots(conn: Any, database: str) -> None:
    """Logical replication slots (CDC tests) keep their database from being dropped."""
    held = (
        "SELECT active_pid FROM pg_replication_slots WHERE database = :d AND active_pid IS NOT NULL"
    )
    for (pid,) in conn.execute(text(held), {"d": database}).all():
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    slots = "SELECT slot_name FROM pg_replication_slots WHERE database = :d"
    for (slot,) in conn.execute(text(slots), {"d": database}).all():
        for _ in range(50):  # a terminated backend lets go of its slot a moment later
            try:
                conn.execute(text("SELECT pg_drop_replication_slot(:s)"), {"s": slot})
                break
            except Exception:
                time.sleep(0.1)


@pytest.fixture
def mysql_url() -> Iterator[str]:
    name = _name()
    admin = create_engine(MYSQL_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        highmark_db.dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def _url_for(backend: str, request: pytest.FixtureRequest, tmp_path: Path, label: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / (label + '.db')}"
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("mysql_url"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One database on the parametrised backend (source, target and control share it)."""
    return _url_for(backend, request, tmp_path, "data")


def sa_url(url: str) -> str:
    """The SQLAlchemy form of a highmark connection URL (for tests' own engines)."""
    if url.startswith("postgresql://"):
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    if url.startswith("mysql://"):
        return url.replace("mysql://", "mysql+pymysql://", 1) + "?charset=utf8mb4"
    return url


@pytest.fixture
def engine_for() -> Iterator[Callable[[str], Engine]]:
    """Plain SQLAlchemy engines for a test to set up and inspect databases (PostgreSQL's read
    infinite timestamps and dates as highmark does: highmark/infinity.py)."""
    engines: list[Engine] = []

    def make(url: str) -> Engine:
        engine = create_engine(sa_url(url))
        if engine.dialect.name == "postgresql":
            event.listen(engine, "connect", lambda dbapi, _: infinity.register(dbapi.adapters))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def write_project(tmp_path: Path) -> Callable[..., Path]:
    """Write a highmark.yml into tmp_path and return its path."""

    def write(
        *,
        control: str | None = None,
        connections: dict[str, Any],
        jobs: dict[str, Any],
        path: Path | None = None,
    ) -> Path:
        document: dict[str, Any] = {"connections": connections, "jobs": jobs}
        if control is not None:
            document["control"] = control
        file = path or tmp_path / "highmark.yml"
        file.write_text(yaml.safe_dump(document, sort_keys=False))
        return file

    return write
