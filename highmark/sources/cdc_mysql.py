"""A MySQL/MariaDB table's changes, read from the binary log (ROW format, full row images).

highmark reads the binlog as a replica would (python-mysql-replication, on PyMySQL), from a file
and offset it keeps itself: the server holds nothing for it (no slot), so the position lives in
highmark's checkpoint and watermark only, as one integer — the binlog file's number * 2**32 plus
the offset in it — which orders positions across files. A run reads from its position to the end
of the log as it was when the run started, transaction by transaction (a GTID event opens one, an
XID event — or a DDL statement, or COMMIT — ends it).

The server must log rows (``log_bin``, ``binlog_format=ROW``, ``binlog_row_image=FULL``) with
their column names (``binlog_row_metadata=FULL``); ``highmark check`` says how. A binlog file the
server purged before highmark read it loses the changes in it: the run fails and says how to take
a new snapshot. Positions are file offsets on the server read: after a failover to another server,
take a new snapshot too.
"""

from __future__ import annotations

import logging
import re
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from highmark.config import ResolvedConnection, TableJobSpec
from highmark.db import get_engine
from highmark.errors import SourceError, one_line, translate_db_error
from highmark.sources.changes import ChangeSet, Key, LogPoint
from highmark.sources.conversion import Converted, convert_row
from highmark.sources.sql import SqlSource
from highmark.sqlschema import TableSchema
from highmark.sqltypes import read_converter

log = logging.getLogger(__name__)

PARTIAL_FACTOR = 4
_FILE_INDEX = re.compile(r"\.(\d+)$")
_TRUNCATE = re.compile(r"^\s*TRUNCATE\s+(?:TABLE\s+)?(?:`?([^`.\s]+)`?\.)?`?([^`\s;]+)`?", re.I)
_ALTER = re.compile(
    r"^\s*ALTER\s+(?:ONLINE\s+|IGNORE\s+)*TABLE\s+(?:`?([^`.\s]+)`?\.)?`?([^`\s]+)`?", re.I
)
REQUIRED = {
    "log_bin": ("1", "enable the binary log: log_bin = mysql-bin in the server's config, restart"),
    "binlog_format": ("ROW", "SET GLOBAL binlog_format = 'ROW' (and in the config)"),
    "binlog_row_image": ("FULL", "SET GLOBAL binlog_row_image = 'FULL' (and in the config)"),
    "binlog_row_metadata": ("FULL", "SET GLOBAL binlog_row_metadata = 'FULL' (and in the config)"),
}  # fmt: skip


def encode(file: str, offset: int) -> int:
    match = _FILE_INDEX.search(file)
    if match is None:
        raise SourceError(f"cannot read the binlog file name {file!r}", retryable=False)
    return (int(match.group(1)) << 32) | offset


class MysqlChanges:
    """The change log of one job's source table on MySQL/MariaDB (see the module docstring)."""

    def __init__(self, connection: ResolvedConnection, job: TableJobSpec) -> None:
        self.connection = connection
        self.job = job
        self.engine = get_engine(connection.url, "source")
        self.reader = SqlSource(connection, job.source, _plain(job))
        url = connection.url
        self.database = job.source.schema_name or url.database or ""
        self.table = job.source.table_name
        self.server_id = job.cdc_settings.server_id or 1000 + zlib.crc32(job.job_id.encode()) % (
            2**31
        )
        self._base: str | None = None
        self._plans: dict[tuple[str, ...], _RowPlan] = {}

    # ------------------------------------------------------------------ plumbing

    def _where(self) -> str:
        return f"source {self.job.source.table} on {self.connection.name}"

    @contextmanager
    def _errors(self, context: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise translate_db_error(exc, SourceError, f"{context} {self._where()}") from exc
        except Exception as exc:  # PyMySQL under the binlog reader
            import pymysql

            if not isinstance(exc, pymysql.Error):
                raise
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            raise SourceError(
                f"{context} {self._where()}: {one_line(str(exc))}",
                retryable=isinstance(exc, pymysql.OperationalError)
                and (code is None or code >= 2000 or code in (1053, 1927, 1317)),
                driver_error=type(exc).__name__,
            ) from exc

    def _rows(self, query: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(query)).all())

    def describe(self) -> TableSchema:
        return self.reader.describe()

    def close(self) -> None:
        """The binlog stream is closed after each read; nothing is held between."""

    # ------------------------------------------------------------------ positions

    def _basename(self) -> str:
        if self._base is None:
            with self._errors("cannot read the binlog settings of"):
                (value,) = self._rows("SELECT @@log_bin_basename")[0]
            self._base = str(value or "mysql-bin").replace("\\", "/").rsplit("/", 1)[-1]
        return self._base

    def _file(self, position: int) -> str:
        return f"{self._basename()}.{position >> 32:06d}"

    def point(self, position: int, at: datetime | None) -> LogPoint:
        return LogPoint(position, f"{self._file(position)}:{position & 0xFFFFFFFF}", at)

    def current(self) -> LogPoint:
        with self._errors("cannot read the binlog position of"):
            rows = self._rows("SHOW MASTER STATUS")
            (now,) = self._rows("SELECT UTC_TIMESTAMP(6)")[0]
        if not rows:
            raise SourceError(
                f"{self._where()}: the binary log is off; {REQUIRED['log_bin'][1]}",
                retryable=False,
            )
        file, offset = str(rows[0][0]), int(rows[0][1])
        return LogPoint(encode(file, offset), f"{file}:{offset}", now.replace(tzinfo=UTC))

    def settings(self) -> dict[str, str]:
        """The server settings change capture needs, as the server has them."""
        names = ", ".join(f"@@{name}" for name in REQUIRED)
        with self._errors("cannot read the binlog settings of"):
            values = self._rows(f"SELECT {names}")[0]
        return {name: str(v).upper() for name, v in zip(REQUIRED, values, strict=True)}

    def _require_settings(self) -> None:
        wrong = [
            f"{name} is {value} ({REQUIRED[name][1]})"
            for name, value in self.settings().items()
            if value != REQUIRED[name][0]
        ]
        if wrong:
            raise SourceError(
                f"{self._where()}: change capture needs the binary log in ROW format with full "
                f"rows and column names: {'; '.join(wrong)}",
                retryable=False,
            )

    def start(self) -> LogPoint:
        self.describe()
        self._require_settings()
        return self.current()

    def resume(self, position: int) -> None:
        self._require_settings()
        wanted = self._file(position)
        with self._errors("cannot list the binlog files of"):
            files = {str(row[0]) for row in self._rows("SHOW BINARY LOGS")}
        if wanted not in files:
            raise SourceError(
                f"job {self.job.job_id}: binlog file {wanted} is gone (purged?); the changes "
                f"after {self.point(position, None).text} cannot be read any more: re-snapshot "
                f"with `highmark run {self.job.job_id} --full-refresh`",
                retryable=False,
                reason="log_lost",
            )

    def confirm(self, position: int) -> None:
        """Nothing to tell the server: the position lives in highmark's control tables."""

    def lag_bytes(self, position: int | None = None) -> int | None:
        if position is None:
            return None
        index, offset = position >> 32, position & 0xFFFFFFFF
        with self._errors("cannot list the binlog files of"):
            files = self._rows("SHOW BINARY LOGS")
        held = 0
        for name, size, *_ in files:
            match = _FILE_INDEX.search(str(name))
            number = int(match.group(1)) if match else -1
            if number > index:
                held += int(size)
            elif number == index:
                held += max(int(size) - offset, 0)
        return held

    def drop(self) -> list[str]:
        return []  # the server keeps nothing for highmark

    # ------------------------------------------------------------------ reading

    def changes(self, after: LogPoint, upto: LogPoint, batch_size: int) -> Iterator[ChangeSet]:
        if upto.position <= after.position:
            return
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import (
            MariadbGtidEvent,
            QueryEvent,
            RotateEvent,
            XidEvent,
        )
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        url = self.connection.url
        settings = {
            "host": url.host or "127.0.0.1",
            "port": url.port or 3306,
            "user": url.username or "",
            "password": url.password or "",
            "charset": "utf8mb4",
            "connect_timeout": 10,
        }
        stream = BinLogStreamReader(
            connection_settings=settings,
            server_id=self.server_id,
            log_file=self._file(after.position),
            log_pos=after.position & 0xFFFFFFFF,
            resume_stream=True,
            blocking=False,
            only_events=[
                MariadbGtidEvent,
                QueryEvent,
                XidEvent,
                RotateEvent,
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
            ],
            only_schemas=[self.database],
            only_tables=[self.table],
            enable_logging=False,
        )
        pending = ChangeSet()
        at = after.at or datetime.now(UTC)
        try:
            with self._errors("cannot read the binary log of"), warnings.catch_warnings():
                # The reader opens its connections with PyMySQL's deprecated ``db`` argument.
                warnings.simplefilter("ignore", DeprecationWarning)
                for event in stream:
                    stamp = datetime.fromtimestamp(event.timestamp, UTC) if event.timestamp else at
                    boundary = False
                    if isinstance(event, MariadbGtidEvent):
                        at = stamp
                    elif isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                        self._rows_event(event, pending, at)
                        if len(pending) >= PARTIAL_FACTOR * batch_size:
                            yield pending  # a part of one large transaction: end stays None
                            pending = ChangeSet()
                        continue
                    elif isinstance(event, XidEvent):
                        boundary = True
                    elif isinstance(event, QueryEvent):
                        boundary = self._query(event, pending, stamp)
                    if not boundary:
                        continue
                    position = encode(stream.log_file, stream.log_pos)
                    pending.transactions += 1
                    pending.end = self.point(position, stamp)
                    done = position >= upto.position
                    if len(pending) >= batch_size or done:
                        yield pending
                        pending = ChangeSet()
                    if done:
                        return
                if pending.changes or pending.end is not None or pending.new_columns:
                    yield pending
        finally:
            stream.close()

    def _query(self, event: Any, pending: ChangeSet, at: datetime) -> bool:
        """A statement event: BEGIN (not a boundary), COMMIT, or DDL (each its own
        transaction); TRUNCATE and ALTER of this table change what follows."""
        query = event.query.strip()
        head = query[:10].upper()
        if head.startswith("BEGIN") or head.startswith("XA "):
            return False
        default = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema)
        for pattern, act in ((_TRUNCATE, "truncate"), (_ALTER, "alter")):
            match = pattern.match(query)
            if match is None:
                continue
            schema, name = match.group(1) or default, match.group(2)
            if schema.lower() == self.database.lower() and name.lower() == self.table.lower():
                if act == "truncate":
                    pending.truncate(at)
                else:
                    self.reader = SqlSource(self.connection, self.job.source, _plain(self.job))
                    self._plans.clear()
                    pending.new_columns.add(name)
        return True

    def _rows_event(self, event: Any, pending: ChangeSet, at: datetime) -> None:
        columns = tuple(c.name for c in event.columns)
        if any(name is None for name in columns):
            raise SourceError(
                f"{self._where()}: the binary log has no column names; "
                f"{REQUIRED['binlog_row_metadata'][1]}",
                retryable=False,
            )
        plan = self._plans.get(columns)
        if plan is None:
            plan = self._plans[columns] = _RowPlan(columns, self)
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent

        for change in event.rows:
            if isinstance(event, DeleteRowsEvent):
                pending.delete(plan.key(plan.row(change["values"]).row), at)
                continue
            if isinstance(event, UpdateRowsEvent):
                after = plan.row(change["after_values"], change.get("after_none_sources"))
                old_key = plan.key(plan.row(change["before_values"]).row)
                if old_key != plan.key(after.row):
                    pending.delete(old_key, at)  # the primary key itself changed
            else:
                after = plan.row(change["values"], change.get("none_sources"))
            key = plan.key(after.row)
            if after.refused is None:
                pending.upsert(key, after.row, at, frozenset())
            else:  # a value the source cannot convert: a bad row
                pending.refuse(key, after.refused)


class _RowPlan:
    """Binlog values (as the reader decoded them) -> canonical values, by column name."""

    def __init__(self, columns: tuple[str, ...], source: MysqlChanges) -> None:
        schema = source.describe()
        zone = source.reader.zone
        # (binlog name, source name, converter, decode bytes?): a masked column's value is
        # hashed here, before it leaves the source, from the text the snapshot would read.
        self.columns: list[tuple[str, str, Any, bool]] = []
        for name in columns:
            info = schema.find(name)
            if info is not None:  # else left out by the job, or dropped since
                decode = read_converter(info, zone) is None
                self.columns.append((name, info.name, source.reader.converter(info), decode))
        self.converters = [(target, convert) for _, target, convert, _ in self.columns]
        present = {target for _, target, _, _ in self.columns}
        self.absent = [c.name for c in schema.columns if c.name not in present]
        self.keys = []
        for key in source.job.primary_key:
            info = schema.find(key)
            if info is None:
                raise SourceError(f"primary key column {key!r} is not in {schema.qualified_name}")
            self.keys.append(info.name)

    def row(self, values: dict[str, Any], nones: dict[str, str] | None = None) -> Converted:
        """The row, and why a value could not be converted (the row then holds it as read).
        ``nones``: why the reader gave None for a column (python-mysql-replication)."""
        raw = []
        for name, _, _, decode in self.columns:
            value = values.get(name)
            if isinstance(value, bytes) and decode:
                value = value.decode("utf-8", errors="replace")
            elif value is None and nones and nones.get(name, "").startswith("out of date"):
                # A zero or partial date ('0000-00-00', '2024-00-10', which MySQL keeps outside
                # strict mode): the reader says None, the snapshot reads text it cannot convert,
                # a bad row. The same here, not a NULL in the target.
                value = f"a zero or partial date ({nones[name]})"
            raw.append(value)
        converted = convert_row(self.converters, raw)
        for name in self.absent:
            converted.row.setdefault(name, None)
        return converted

    def key(self, row: dict[str, Any]) -> Key:
        return tuple(row[k] for k in self.keys)


def _plain(job: TableJobSpec) -> TableJobSpec:
    return job.model_copy(update={"soft_delete": None, "watermark": None})
