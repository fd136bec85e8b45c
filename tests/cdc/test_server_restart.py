"""The source server restarting in the middle of a CDC run: a real restart of the local
PostgreSQL or MariaDB server, not only its sessions killed (tests/cdc/test_faults.py does that).

A restart takes every other test's connections with it, so these run in the serial phase of
scripts/test.sh, alone; they need to be root on the machine that runs the servers (as `.ci/run` is).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from tests.cdc.support import JOB, assert_equal, eight_transactions, write_cdc_project
from tests.faults.harness import Pause, run, start
from tests.faults.invariants import reaped
from tests.helpers import create_orders, insert_orders, order

pytestmark = [
    pytest.mark.serial,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("pg_ctlcluster"),
        reason="restarting the local servers needs root and Debian's pg_ctlcluster",
    ),
]

READY_SECONDS = 90


def _restart_postgresql() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
    )
    _wait_for(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"])


def _restart_mariadb() -> None:
    subprocess.run(
        ["mysqladmin", "-h", "127.0.0.1", "-u", "root", "shutdown"], check=True, capture_output=True
    )
    deadline = time.monotonic() + READY_SECONDS
    while (
        subprocess.run(["pgrep", "-x", "mariadbd"], check=False, capture_output=True).returncode
        == 0
    ):
        assert time.monotonic() < deadline, "MariaDB did not stop"
        time.sleep(0.2)
    subprocess.run(
        [
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/mariadbd",
        ],
        check=True,
        capture_output=True,
    )
    _wait_for(["mysqladmin", "-h", "127.0.0.1", "-u", "root", "--silent", "ping"])


def _wait_for(command: list[str]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while subprocess.run(command, check=False, capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, f"server not back: {command[0]}"
        time.sleep(0.3)


def _usable(engine: Engine) -> None:
    """Drop the pool's dead connections and wait until the server takes new sessions."""
    engine.dispose()
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except DBAPIError:
            assert time.monotonic() < deadline, "server does not take sessions"
            time.sleep(0.3)


@pytest.mark.parametrize("point", ["after_target_commit", "before_log_confirm"])
def test_source_server_restarts_mid_run(
    cdc_url: str,
    point: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    mysql = cdc_url.startswith("mysql")
    if mysql and point == "before_log_confirm":
        pytest.skip("MySQL/MariaDB keep no position for highmark: nothing to confirm")
    engine = engine_for(cdc_url)
    insert_orders(engine, create_orders(engine), [order(i) for i in range(1, 13)])
    # The control tables live apart (SQLite), so what restarts is the source and target only.
    project = write_cdc_project(
        write_project, cdc_url, control=f"sqlite:///{tmp_path / 'control.db'}"
    )
    first = run(project, "run", JOB)
    assert first.returncode == 0, first.stderr
    eight_transactions(engine)

    pause = Pause(tmp_path, point)
    with reaped(start(project, "run", JOB, env=pause.env)) as child:
        pause.wait(child)
        (_restart_mariadb if mysql else _restart_postgresql)()
        pause.release()
        _, err = child.communicate(timeout=180)
    # Either the run got through on new sessions, or it failed as a retryable error naming the
    # lost connection; either way the next run finishes the work and nothing is lost or doubled.
    if child.returncode != 0:
        assert "Traceback" not in err, err
    _usable(engine)
    again = run(project, "run", JOB)
    assert again.returncode == 0, again.stderr
    assert_equal(engine)
