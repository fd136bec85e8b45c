"""MariaDB upper bounds taken by many runs at once: none is held back for nothing, none too high.

The bound is proven safe by reading information_schema.innodb_trx from a cache refreshed after
the bound's own transaction began (highmark/window.py). InnoDB refreshes that cache only after
0.1 s without a read, so sessions reading it together used to keep it stale: a worker's runs
due at the same minute held one another's watermarks back.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from highmark import window
from highmark.clock import ensure_utc
from highmark.db import create_configured_engine
from tests.conftest import sa_url

SESSIONS = 12


@pytest.fixture
def engines(mysql_url: str) -> Iterator[list[Engine]]:
    """One engine per session, configured as highmark configures a source's (UTC session)."""
    made = [create_configured_engine(make_url(sa_url(mysql_url)), "source") for _ in range(16)]
    yield made
    for engine in made:
        engine.dispose()


def _bounds_taken_together(engines: list[Engine], spread: float) -> list[window.UpperBound]:
    """Each engine takes a bound on a thread of its own, all starting within ``spread`` s."""
    found: list[window.UpperBound] = []
    errors: list[BaseException] = []

    def take(engine: Engine, delay: float) -> None:
        time.sleep(delay)
        try:
            with engine.connect() as conn:
                found.append(window.timestamp_cap(conn))
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(e, random.uniform(0, spread))) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return found


@pytest.mark.parametrize("spread", [0.0, 1.0], ids=["at-once", "within-a-second"])
def test_bounds_taken_together_are_not_held_back(engines: list[Engine], spread: float) -> None:
    for _ in range(2):
        bounds = _bounds_taken_together(engines[:SESSIONS], spread)
        held = [b.reason for b in bounds if b.hold]
        assert not held, f"{len(held)} of {len(bounds)} held back: {held[0]}"
        # Each cap stays below its own clock less the margin (other sessions' bound
        # transactions may lower it a little further: they are open transactions too).
        assert all(b.cap <= b.now - window.CLOCK_MARGIN for b in bounds)


def test_a_write_open_before_still_holds_every_bound_back(engines: list[Engine]) -> None:
    writer = engines[-1]
    with writer.connect() as conn:
        conn.execute(text("CREATE TABLE t (id INT PRIMARY KEY)"))
        conn.commit()
        conn.execute(text("INSERT INTO t VALUES (1)"))  # a transaction left open
        started = _trx_started(conn)
        time.sleep(1.2)  # so that the bound's own margin alone would pass it

        bounds = _bounds_taken_together(engines[:SESSIONS], 0.5)
        conn.rollback()

    assert not any(b.hold for b in bounds)
    for bound in bounds:
        assert bound.cap <= started - window.MYSQL_MARGIN, bound
        assert "held by thread" in bound.reason


def test_a_session_reading_innodb_trx_constantly_holds_the_bound(engines: list[Engine]) -> None:
    """The cache cannot be proven fresh: the bound is held rather than guessed."""
    stop = threading.Event()

    def poll() -> None:
        with engines[-1].connect() as conn:
            while not stop.is_set():
                conn.execute(text("SELECT count(*) FROM information_schema.innodb_trx")).all()
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        time.sleep(0.1)
        with engines[0].connect() as conn:
            bound = window.timestamp_cap(conn)
    finally:
        stop.set()
        poller.join()
    assert bound.hold and "stays stale" in bound.reason


def _trx_started(conn: Connection) -> datetime:
    """When this session's open transaction began (once the cache lists it)."""
    while True:
        time.sleep(0.15)  # InnoDB refreshes the cache only after 0.1 s unread
        value = conn.execute(
            text(
                "SELECT trx_started FROM information_schema.innodb_trx"
                " WHERE trx_mysql_thread_id = CONNECTION_ID()"
            )
        ).scalar()
        if value is not None:
            return ensure_utc(value)
