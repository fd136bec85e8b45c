"""The one exception tree of highmark.

    HighmarkError                      every error highmark raises on purpose
    ├── ConfigError                    bad project file or arguments (exit 2, before any work)
    ├── JobNotFoundError               an unknown job id (exit 2)
    ├── StoreError                     the control store cannot be used as asked
    │   ├── StoreVersionError          the store's schema is newer than this code
    │   └── RunNotFoundError           an unknown run id (exit 2)
    ├── JobAlreadyRunningError         a job already has a live run (exit 1)
    ├── DuplicateRequestError          an API request's Idempotency-Key already started a run
    ├── LeaseLostError                 this process no longer owns its run (fencing)
    │   └── ClaimLostError             a worker no longer holds the slot its run is for
    ├── RunCancelledError              a run was asked to stop
    ├── RunTimeoutError                a run outlived its timeout (retryable)
    ├── SourceError                    reading the source failed
    │   └── ApiError                   an HTTP API refused or kept failing a request
    ├── DestinationError               writing the target failed
    │   └── SchemaConflictError        the target's columns conflict with the source's
    └── CheckpointError                a checkpoint that cannot be used

Every error carries ``retryable``: True for errors a later attempt may not meet (lost
connections, timeouts, deadlocks, lock waits), False for errors that need a human (a missing
column, a schema conflict, bad credentials). Foreign exceptions are translated at the boundary by
:func:`translate_db_error`, and their messages are scrubbed of secrets there.
"""

from __future__ import annotations

from typing import Any

from highmark.redact import scrub


class HighmarkError(Exception):
    """Root of highmark's errors. ``str(err)`` is one line a user can act on."""

    retryable: bool = False
    exit_code: int = 1

    def __init__(self, message: str, *, retryable: bool | None = None, **details: Any) -> None:
        super().__init__(one_line(scrub(message)))
        if retryable is not None:
            self.retryable = retryable
        self.details: dict[str, Any] = {k: v for k, v in details.items() if v is not None}


class ConfigError(HighmarkError):
    """The project file or the command line is wrong; nothing was done."""

    exit_code = 2


class JobNotFoundError(HighmarkError):
    exit_code = 2


class StoreError(HighmarkError):
    pass


class StoreVersionError(StoreError):
    exit_code = 2


class RunNotFoundError(StoreError):
    exit_code = 2


class JobAlreadyRunningError(HighmarkError):
    pass


class DuplicateRequestError(HighmarkError):
    """An API request's ``Idempotency-Key`` already started a run: the request is a retry."""


class LeaseLostError(HighmarkError):
    """Another process took this run over (or finished it); this one must stop writing."""


class ClaimLostError(LeaseLostError):
    """A scheduled run's worker no longer holds its slot (its lease lapsed and another worker
    took it over): the run must not start."""


class RunCancelledError(HighmarkError):
    """The run was asked to stop (signal or `highmark cancel`)."""

    def __init__(self, message: str, *, signal_number: int | None = None) -> None:
        super().__init__(message)
        self.signal_number = signal_number


class RunTimeoutError(HighmarkError):
    """The run outlived its job's ``timeout_seconds``; a later attempt may finish in time."""

    retryable = True


class SourceError(HighmarkError):
    pass


class ApiError(SourceError):
    """An HTTP API refused a request (permanent: credentials, permissions, a bad request) or kept
    failing it past the retry policy (retryable: throttling, server errors, lost connections).

    ``service`` names the API ("github"), ``status`` is the last HTTP status (None when no answer
    came), ``code`` the service's own error code when it sent one. ``details`` adds the request
    path (never its query string), request ids, attempts and, for a rate limit that resets later
    than the client would wait, ``resets_at`` (ISO 8601, UTC).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        service: str,
        status: int | None = None,
        code: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(
            message, retryable=retryable, service=service, status=status, code=code, **details
        )
        self.service = service
        self.status = status
        self.code = code


class DestinationError(HighmarkError):
    pass


class SchemaConflictError(DestinationError):
    pass


class ValueRefused(ValueError):
    """A value no column of the target holds (a NaN into SQLite, which would store NULL; a NaN or
    an infinity into MySQL/MariaDB), refused on its way to the driver: its row is a bad row."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"{reason}: column {column}")
        self.column = column


class CheckpointError(HighmarkError):
    pass


class CheckpointEditError(CheckpointError):
    """An edit of a checkpoint (``highmark checkpoint set`` …) that its kind's model refuses: bad
    usage, so nothing was changed and the exit code is 2."""

    exit_code = 2


def one_line(text: str) -> str:
    """Collapse a (driver) message to its first meaningful line."""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return text.strip() or "unknown error"


# SQLSTATE classes and codes that a later attempt may not meet.
_RETRYABLE_SQLSTATES = (
    "08",  # connection exception
    "40001",  # serialization failure
    "40P01",  # deadlock detected
    "55P03",  # lock not available
    "57P01",  # admin shutdown (pg_terminate_backend, restart)
    "57P02",  # crash shutdown
    "57P03",  # cannot connect now (starting up)
    "57014",  # query canceled (statement_timeout)
    "53",  # insufficient resources (disk full, out of memory, too many connections)
)
# MySQL/MariaDB error numbers that a later attempt may not meet.
_RETRYABLE_MYSQL_CODES = {
    1040,  # too many connections
    1205,  # lock wait timeout
    1213,  # deadlock
    1927,  # connection was killed (MariaDB)
    2002,  # can't connect (socket)
    2003,  # can't connect (TCP)
    2006,  # server has gone away
    2013,  # lost connection during query
    2055,  # lost connection at handshake
    1053,  # server shutdown in progress
    3024,  # query execution interrupted, max execution time exceeded
    1317,  # query execution was interrupted
}


def is_retryable_db_error(exc: BaseException) -> bool:
    """Classify a DBAPI/SQLAlchemy error as retryable (transient) or permanent."""
    import sqlalchemy.exc as sa_exc

    orig: BaseException | None = exc
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_RETRYABLE_SQLSTATES):
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _RETRYABLE_MYSQL_CODES:
        return True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        # OperationalError without a known permanent code: connection trouble, mostly.
        code = args[0] if args and isinstance(args[0], int) else None
        if (
            code is not None
            and code not in _RETRYABLE_MYSQL_CODES
            and (code < 2000 or code in _DATA_MYSQL_CODES)
        ):
            return False  # e.g. 1045 access denied, 1049 unknown database, 4025 a CHECK
        text = str(orig).lower()
        permanent_markers = (
            "password authentication failed",
            "does not exist",
            "no such table",
            "no such column",
            "unable to open database file",
            "access denied",
            "permission denied",
        )
        return not any(marker in text for marker in permanent_markers)
    return False


# SQLSTATE classes of errors about the values of a row: data exceptions (too long, out of range,
# invalid text representation, bad datetime…) and integrity constraint violations.
_DATA_SQLSTATES = ("22", "23")
# MySQL/MariaDB error numbers about the values of a row.
_DATA_MYSQL_CODES = {
    1048,  # column cannot be null
    1062,  # duplicate entry
    1264,  # out of range value
    1265,  # data truncated
    1292,  # incorrect datetime (or other) value
    1364,  # field has no default value
    1366,  # incorrect integer/string value
    1367,  # illegal value
    1406,  # data too long
    1451,  # a child row refers to it (foreign key)
    1452,  # no parent row (foreign key)
    1690,  # value out of range
    3819,  # check constraint violated (MySQL)
    4025,  # CONSTRAINT failed (MariaDB CHECK)
}


def is_data_db_error(exc: BaseException) -> bool:
    """Did the database refuse the *values* of a row (a constraint, a value too long or out of
    range, unparsable text) rather than fail for a reason of its own (a connection, a lock)?
    A retryable error is never a data error; Python's own refusals of a value on its way to the
    driver (an integer too large for SQLite) are."""
    import sqlite3

    import sqlalchemy.exc as sa_exc

    if isinstance(exc, ValueRefused):
        return True
    if is_retryable_db_error(exc):
        return False
    orig: BaseException | None = exc
    if isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
    if isinstance(orig, sqlite3.IntegrityError | sqlite3.DataError | OverflowError):
        return True
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_DATA_SQLSTATES)
    if _is_psycopg_value_refusal(orig) or _is_pymysql_value_refusal(orig):
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and isinstance(args[0], int) and args[0] in _DATA_MYSQL_CODES


def _is_psycopg_value_refusal(exc: BaseException | None) -> bool:
    """psycopg's own refusal of a value before it reaches the server (a NUL character in text:
    "PostgreSQL text fields cannot contain NUL (0x00) bytes"): a DataError with no SQLSTATE."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.DataError) and getattr(exc, "sqlstate", None) is None


def _is_pymysql_value_refusal(exc: BaseException | None) -> bool:
    """PyMySQL's own refusal of a value it cannot write as SQL ("nan can not be used with
    MySQL": a float NaN or infinity, which no MySQL/MariaDB column holds)."""
    if type(exc).__name__ != "ProgrammingError" or type(exc).__module__ != "pymysql.err":
        return False
    return "can not be used with MySQL" in str(exc)


def translate_db_error(
    exc: BaseException, error_type: type[HighmarkError], context: str
) -> HighmarkError:
    """Turn a foreign database error into a highmark error with a one-line, secret-free message."""
    import sqlalchemy.exc as sa_exc

    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    message = one_line(str(orig)) or type(orig).__name__
    return error_type(
        f"{context}: {message}",
        retryable=is_retryable_db_error(exc),
        driver_error=type(orig).__name__,
    )
