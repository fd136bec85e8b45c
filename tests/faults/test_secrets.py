"""A database password never leaves highmark: not on stdout or stderr (with or without --debug), not
in the control tables, not in the control database's files, whether the password is right, wrong,
or leads nowhere.

The password reaches the project through ``${VAR}`` under a variable whose name does not look
secret, so highmark learns that it is one only from its place in a connection URL.
"""

from __future__ import annotations

import io
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest
import sqlalchemy.exc as sa_exc
from sqlalchemy import MetaData, Table, create_engine, select, text
from sqlalchemy.engine import Engine

from highmark.errors import SourceError, translate_db_error
from highmark.redact import ScrubbingFilter, register_secret
from tests.conftest import MYSQL_ADMIN_URL
from tests.faults import harness
from tests.faults.invariants import JOB, assert_no_secret, assert_target_equals_source, job_spec
from tests.helpers import create_orders, insert_orders, order

GOOD = "Sup3rS3cret!pw"
WRONG = "Wr0ngS3cret!pw"
SECRETS = (GOOD, WRONG)
VAR = "HM_SOURCE_PW"  # a name without "password" in it: the URL alone marks the value secret


@pytest.fixture
def mysql_user(mysql_url: str) -> Iterator[str]:
    """A MariaDB user with password GOOD, allowed everything on the test database (and PROCESS,
    so that the upper bound can see open transactions)."""
    user = f"hm_x_{uuid.uuid4().hex[:8]}"
    database = mysql_url.rsplit("/", 1)[1]
    admin = create_engine(MYSQL_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{GOOD}'"))
        conn.execute(text(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'"))
        conn.execute(text(f"GRANT PROCESS ON *.* TO '{user}'@'%'"))
    try:
        yield user
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()


def _project(
    write_project: Callable[..., Path], tmp_path: Path, source_url: str, target_url: str
) -> Path:
    return write_project(
        control=f"sqlite:///{tmp_path / 'control.db'}",
        connections={"src": source_url, "dst": target_url},
        jobs={JOB: job_spec()},
    )


def _cli(path: Path, password: str, *args: str) -> str:
    """Run one highmark command with the password in the environment; its whole output."""
    result = harness.run(path, *args, env=harness.highmark_env(**{VAR: password}))
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def _reports(path: Path, password: str) -> list[str]:
    """What highmark shows about the job afterwards (the control tables hold the rest)."""
    return [
        _cli(path, password, "runs", "--json"),
        _cli(path, password, "--debug", "check", JOB),
    ]


def _control_store(tmp_path: Path) -> list[str]:
    """Every control table row as text, and the control database's files as they lie on disk."""
    engine = create_engine(f"sqlite:///{tmp_path / 'control.db'}")
    texts: list[str] = []
    try:
        with engine.connect() as conn:
            for name in ("etl_jobs", "etl_job_runs", "etl_watermarks"):
                table = Table(name, MetaData(), autoload_with=conn)
                texts.extend(repr(tuple(row)) for row in conn.execute(select(table)))
    finally:
        engine.dispose()
    files = sorted(tmp_path.glob("control.db*"))
    assert files
    texts.extend(f.read_bytes().decode("latin-1") for f in files)
    return texts


def _run_rows(tmp_path: Path) -> list[dict[str, object]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'control.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM etl_job_runs ORDER BY run_id")).mappings()
            return [dict(r) for r in rows]
    finally:
        engine.dispose()


def test_a_password_in_a_working_url_is_never_shown_or_stored(
    mysql_url: str,
    mysql_user: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    engine = engine_for(mysql_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 6)])
    url = mysql_url.replace("mysql://root@", f"mysql://{mysql_user}:${{{VAR}}}@")
    path = _project(write_project, tmp_path, url, url)

    first = _cli(path, GOOD, "run", JOB)
    insert_orders(engine, table, [order(i) for i in range(6, 9)])
    second = _cli(path, GOOD, "--debug", "run", JOB, "--json")

    assert first.startswith("exit 0\n"), first
    assert second.startswith("exit 0\n"), second
    assert "DEBUG" in second  # the debug output really was on
    assert_target_equals_source(engine)
    assert [r["run_status"] for r in _run_rows(tmp_path)] == ["success", "success"]
    assert_no_secret(SECRETS, first, second, *_reports(path, GOOD), *_control_store(tmp_path))


def test_a_wrong_password_fails_the_run_without_showing_either_password(
    mysql_url: str,
    mysql_user: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    engine = engine_for(mysql_url)
    table = create_orders(engine)
    insert_orders(engine, table, [order(i) for i in range(1, 4)])
    url = mysql_url.replace("mysql://root@", f"mysql://{mysql_user}:${{{VAR}}}@")
    path = _project(write_project, tmp_path, url, url)

    result = harness.run(path, "run", JOB, env=harness.highmark_env(**{VAR: WRONG}))
    debug = _cli(path, WRONG, "--debug", "run", JOB)

    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    summary = [line for line in result.stdout.splitlines() if "access denied" in line.lower()]
    assert len(summary) == 1 and "failed" in summary[0], output
    (error,) = result.stderr.splitlines()
    assert error.startswith("highmark: error:") and "access denied" in error.lower()
    assert debug.startswith("exit 1\n"), debug
    assert "Traceback" in debug  # --debug shows the failure's traceback
    rows = _run_rows(tmp_path)
    assert [r["run_status"] for r in rows] == ["failed", "failed"]
    assert all("access denied" in str(r["error_message"]).lower() for r in rows)
    assert all(r["error_details"] for r in rows)
    assert_no_secret(
        SECRETS,
        result.stdout,
        result.stderr,
        debug,
        *_reports(path, WRONG),
        *_control_store(tmp_path),
    )


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_password_to_a_server_that_is_not_there_is_never_shown(
    write_project: Callable[..., Path], tmp_path: Path
) -> None:
    url = f"postgresql://postgres:${{{VAR}}}@127.0.0.1:{_closed_port()}/shop"
    path = _project(write_project, tmp_path, url, f"sqlite:///{tmp_path / 'dw.db'}")

    result = harness.run(path, "run", JOB, env=harness.highmark_env(**{VAR: GOOD}))
    debug = _cli(path, GOOD, "--debug", "run", JOB)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "refused" in result.stdout.lower(), result.stdout
    assert debug.startswith("exit 1\n") and "Traceback" in debug, debug
    rows = _run_rows(tmp_path)
    assert [r["run_status"] for r in rows] == ["failed", "failed"]
    assert_no_secret(
        SECRETS,
        result.stdout,
        result.stderr,
        debug,
        *_reports(path, GOOD),
        *_control_store(tmp_path),
    )


# ---------------------------------------------------------------------------- unit level


def _driver_error(secret: str) -> sa_exc.OperationalError:
    """What a driver might raise: an error whose message quotes the connection string."""
    orig = pymysql.err.OperationalError(
        2003, f"Can't connect to mysql://etl:{secret}@db.internal:3306/erp\nretrying"
    )
    return sa_exc.OperationalError("SELECT 1", None, orig)


def test_translate_db_error_scrubs_a_registered_secret() -> None:
    secret = f"Unit{uuid.uuid4().hex[:10]}!pw"
    register_secret(secret)

    error = translate_db_error(_driver_error(secret), SourceError, "cannot read source orders")

    assert_no_secret([secret], str(error), repr(error.details))
    assert str(error).startswith("cannot read source orders: ")
    assert "mysql://etl:***@db.internal" in str(error)
    assert error.retryable is True


def test_the_logging_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    secret = f"Unit{uuid.uuid4().hex[:10]}!pw"
    register_secret(secret)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubbingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"tests.secrets.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    error = _driver_error(secret)
    logger.warning("connecting with %s failed", error)
    logger.info(f"inline {secret}")
    try:
        try:
            raise error
        except sa_exc.OperationalError as exc:
            raise translate_db_error(exc, SourceError, "cannot read") from exc
    except SourceError:
        logger.debug("run failed", exc_info=True)
    handler.flush()

    output = stream.getvalue()
    assert "Traceback" in output and "direct cause" in output
    assert output.count("***") >= 4, output
    assert_no_secret([secret], output)
