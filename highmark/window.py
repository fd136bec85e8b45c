"""The safe upper bound of a run's window, per source database.

A row becomes visible when its transaction commits, but its ``updated_at`` was stamped earlier.
The upper bound therefore stays strictly below the start of the oldest transaction still open on
the source (shared/reliability-notes.md §1.3-1.4), is read from the source database's clock, in a
short transaction of its own, *before* any read snapshot is taken, and is truncated to the
column's precision.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from highmark.clock import ensure_utc

# The bound keeps a margin below the source's clock and below the oldest open transaction:
# - MySQL/MariaDB report trx_started in whole seconds, InnoDB may start a transaction after the
#   statement's NOW() was fixed (reliability-notes §1.4), and information_schema.innodb_trx is a
#   cache refreshed at most every 0.1 s, so a transaction begun just now may not be listed yet;
# - a PostgreSQL backend fixes its transaction's now() a moment before it shows in
#   pg_stat_activity, so a transaction starting while the bound is taken may not be listed yet.
# A second is far below any schedule's period and far above these gaps.
CLOCK_MARGIN = timedelta(seconds=1)
MYSQL_MARGIN = CLOCK_MARGIN
MYSQL_CACHE_IDLE = timedelta(milliseconds=150)
MYSQL_CACHE_ATTEMPTS = 10
# highmark's sessions read innodb_trx one at a time (see _mysql_cap); one waits this long at most.
MYSQL_TURN_LOCK = "highmark.innodb_trx"
MYSQL_TURN_WAIT = timedelta(seconds=5)
# Source sessions of highmark itself only read; they never hold back the bound.
SOURCE_APPLICATION_NAME = "highmark-source"


@dataclass(frozen=True)
class UpperBound:
    """The cap: no row committed later can carry a timestamp at or above ``cap``.

    ``blind`` is True when the source would not show other sessions' transactions (missing
    privilege), so the cap may be unsafe. ``hold`` is True when the mark must not advance at all
    (a prepared transaction is pending, or a SQLite writer holds the database).
    """

    cap: datetime
    reason: str
    now: datetime
    blind: bool = False
    hold: bool = False


def truncate(value: datetime, digits: int | None) -> datetime:
    """Truncate ``value`` to ``digits`` fractional-second digits (None: microseconds)."""
    if digits is None or digits >= 6:
        return value
    step = 10 ** (6 - max(digits, 0))
    return value.replace(microsecond=value.microsecond - value.microsecond % step)


def inclusive_high(cap: datetime, digits: int | None) -> datetime:
    """The greatest value of the column's precision that is strictly below ``cap``."""
    unit = timedelta(microseconds=10 ** (6 - min(max(digits if digits is not None else 6, 0), 6)))
    return truncate(cap, digits) - unit


def timestamp_cap(connection: Connection) -> UpperBound:
    """Compute the cap in its own transaction on ``connection`` (which must hold no snapshot)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return _postgres_cap(connection)
    if dialect == "mysql":
        return _mysql_cap(connection)
    return _sqlite_cap(connection)


def _postgres_cap(connection: Connection) -> UpperBound:
    with connection.begin():
        row = connection.execute(
            text(
                """
                WITH others AS (
                    SELECT pid, xact_start FROM pg_stat_activity
                     WHERE datname = current_database()
                       AND pid <> pg_backend_pid()
                       AND xact_start IS NOT NULL
                       AND backend_type NOT IN ('autovacuum worker', 'walsender')
                       AND coalesce(application_name, '') <> :own_app
                )
                SELECT statement_timestamp() AS now,
                       (SELECT xact_start FROM others ORDER BY xact_start LIMIT 1) AS oldest,
                       (SELECT pid FROM others ORDER BY xact_start LIMIT 1) AS oldest_pid,
                       (SELECT count(*) FROM pg_prepared_xacts
                         WHERE database = current_database()) AS prepared,
                       (SELECT min(gid) FROM pg_prepared_xacts
                         WHERE database = current_database()) AS prepared_gid,
                       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                         OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS can_see
                """
            ),
            {"own_app": SOURCE_APPLICATION_NAME},
        ).one()
    now = ensure_utc(row.now)
    clock_cap = now - CLOCK_MARGIN
    blind = not row.can_see
    if row.prepared:
        return UpperBound(
            cap=now,
            reason=(
                f"held by {row.prepared} pending prepared transaction(s) (gid {row.prepared_gid})"
            ),
            now=now,
            blind=blind,
            hold=True,
        )
    if row.oldest is not None and ensure_utc(row.oldest) < clock_cap:
        oldest = ensure_utc(row.oldest)
        return UpperBound(
            cap=oldest,
            reason=f"held by pid {row.oldest_pid}, open since {_iso(oldest)}",
            now=now,
            blind=blind,
        )
    return UpperBound(
        cap=clock_cap,
        reason="source clock less 1s (no older open transaction)",
        now=now,
        blind=blind,
    )


def _mysql_cap(connection: Connection) -> UpperBound:
    """The oldest open InnoDB transaction, from a cache proven fresh.

    information_schema.innodb_trx is a cache that InnoDB refreshes only when it went unread for
    0.1 s, so sessions reading it often keep it stale. The bound's own transaction registers
    with InnoDB first; a cache that lists it was refreshed after it began, and so lists every
    transaction that began before it and is still open.

    Runs that take their bounds at once (a worker's runs due at the same minute, several
    workers) would keep one another's reads stale, so highmark's sessions take turns
    (``GET_LOCK``) and keep their transactions open while they wait: one refresh after they
    began, by whichever reads first after 0.1 s of quiet, lists them all. (With each session
    reading on its own in a new transaction each time, 39 of 48 bounds taken by 16 sessions
    starting within a second were held back, and 7 of 40 taken by 8 at once; taking turns,
    none.) A session reading the cache every few milliseconds besides highmark still holds the
    bound back: the cache can then not be proven fresh.
    """
    with connection.begin():
        connection.execute(text("START TRANSACTION WITH CONSISTENT SNAPSHOT"))
        now = ensure_utc(connection.execute(text("SELECT UTC_TIMESTAMP(6)")).scalar_one())
        with _mysql_turn(connection):
            for attempt in range(MYSQL_CACHE_ATTEMPTS):
                if attempt:
                    time.sleep(MYSQL_CACHE_IDLE.total_seconds())
                try:
                    rows = connection.execute(
                        text(
                            "SELECT trx_started, trx_mysql_thread_id,"
                            " trx_mysql_thread_id = CONNECTION_ID() AS mine"
                            " FROM information_schema.innodb_trx ORDER BY trx_started"
                        )
                    ).all()
                except DBAPIError:
                    return UpperBound(
                        cap=now - CLOCK_MARGIN,
                        reason="source clock less 1s (cannot see innodb_trx)",
                        now=now,
                        blind=True,
                    )
                if any(r.mine for r in rows):
                    return _mysql_bound(now, [r for r in rows if not r.mine])
    return UpperBound(
        cap=now,
        reason="held: information_schema.innodb_trx stays stale (read constantly by a session)",
        now=now,
        hold=True,
    )


@contextmanager
def _mysql_turn(connection: Connection) -> Iterator[None]:
    """This session's turn among highmark's to read innodb_trx (a server-wide named lock).
    Past the wait, or where the server refuses named locks, the read goes ahead anyway."""
    try:
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"),
            {"name": MYSQL_TURN_LOCK, "wait": int(MYSQL_TURN_WAIT.total_seconds())},
        ).scalar()
    except DBAPIError:
        got = None
    try:
        yield
    finally:
        if got == 1:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": MYSQL_TURN_LOCK})


def _mysql_bound(now: datetime, others: list[Any]) -> UpperBound:
    if others:
        # trx_started is in the session time zone, which highmark sets to UTC.
        first = others[0]
        oldest = ensure_utc(first.trx_started) - MYSQL_MARGIN
        if oldest < now - CLOCK_MARGIN:
            return UpperBound(
                cap=oldest,
                reason=(
                    f"held by thread {first.trx_mysql_thread_id}, open since "
                    f"{_iso(oldest + MYSQL_MARGIN)}"
                ),
                now=now,
            )
    return UpperBound(
        cap=now - CLOCK_MARGIN, reason="source clock less 1s (no older open transaction)", now=now
    )


def _sqlite_cap(connection: Connection) -> UpperBound:
    """SQLite has one writer at a time: while we hold the write lock, no write is pending."""
    raw: Any = connection.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    previous_timeout = cursor.execute("PRAGMA busy_timeout").fetchone()[0]
    try:
        cursor.execute("PRAGMA busy_timeout = 2000")
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            text_ = str(exc).lower()
            now = _sqlite_now(cursor)
            if "locked" in text_ or "busy" in text_:
                return UpperBound(
                    cap=now, reason="held by an open write transaction", now=now, hold=True
                )
            return UpperBound(
                cap=now, reason="source clock (read-only source file)", now=now, blind=True
            )
        try:
            now = _sqlite_now(cursor)
        finally:
            cursor.execute("ROLLBACK")
        return UpperBound(cap=now, reason="source clock (no open write transaction)", now=now)
    finally:
        cursor.execute(f"PRAGMA busy_timeout = {int(previous_timeout)}")
        cursor.close()


def _sqlite_now(cursor: Any) -> datetime:
    value = cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')").fetchone()[0]
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return ensure_utc(value).isoformat().replace("+00:00", "Z")
