"""PostgreSQL → MySQL/MariaDB: each key range streamed as CSV from ``COPY … TO STDOUT`` into
``LOAD DATA LOCAL INFILE``, with no row made a Python object.

Each target column is an expression in the source's SELECT whose text MariaDB takes as the row
path would write it (timestamps moved to the target column's zone, booleans as 0/1). PostgreSQL's
CSV marks NULL with an unquoted ``NULL`` and quotes a value that reads ``NULL``, which is exactly
what LOAD DATA with ``ENCLOSED BY '"' ESCAPED BY ''`` reads back; quotes, commas and newlines in
values travel inside quotes.

With LOCAL, the server turns what would be errors (a value it cannot take, a duplicate key) into
warnings and goes on: so a load that left any warning is refused (:class:`RangeRefused`, rolled
back) and the batch is written again as rows, where such a value is an error that names its row.

The stream goes to the server through PyMySQL's LOAD DATA LOCAL reply, which here sends only a
stream this module registered: a server that asks for any other file (a hostile or compromised
target asking for ``/etc/passwd``) is refused.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from highmark import infinity
from highmark.destinations.ranges import TargetPlan, pg_literal, pg_name, refuse_if_warned
from highmark.sources.base import CopyRange
from highmark.sqltypes import ColumnInfo, Family, TimestampKind

# Families whose PostgreSQL text MariaDB reads as the row path writes them (or with a cast).
SUPPORTED = {
    Family.INTEGER,
    Family.DECIMAL,
    Family.FLOAT,
    Family.BOOLEAN,
    Family.STRING,
    Family.TIMESTAMP,
    Family.DATE,
    Family.TIME,
    Family.JSON,
    Family.UUID,
}
PACKET_BYTES = 1 << 16
STREAM_PREFIX = "highmark-stream-"
CSV_OPTIONS = "FORMAT csv, NULL 'NULL', ENCODING 'UTF8'"

_streams: dict[str, Iterator[bytes]] = {}
_lock = threading.Lock()
_numbers = itertools.count(1)


def guard_local_infile() -> bool:
    """Let PyMySQL answer a LOAD DATA LOCAL request only with a stream registered here; False
    when this PyMySQL cannot be guarded (then LOCAL stays off)."""
    from pymysql import connections

    if not hasattr(connections, "_send_local_file"):
        return False
    connections._send_local_file = _send_stream
    return True


def _send_stream(filename: str | bytes, conn: Any) -> None:
    from pymysql import err

    if isinstance(filename, bytes):
        filename = filename.decode("utf-8", errors="replace")
    with _lock:
        chunks = _streams.pop(filename, None)
    if chunks is None:
        raise err.OperationalError(
            2000, f"the target server asked for the local file {filename!r}; highmark sends none"
        )
    size = min(conn.max_allowed_packet, PACKET_BYTES)
    for chunk in chunks:
        for start in range(0, len(chunk), size):
            conn.write_packet(chunk[start : start + size])


@contextmanager
def _registered(chunks: Iterator[bytes]) -> Iterator[str]:
    name = f"{STREAM_PREFIX}{next(_numbers)}"
    with _lock:
        _streams[name] = chunks
    try:
        yield name
    finally:
        with _lock:
            _streams.pop(name, None)


def unavailable(conn: Connection, plan: TargetPlan) -> str | None:
    """Why ranges cannot be loaded this way, or None when they can."""
    raw = conn.connection.dbapi_connection
    if not getattr(raw, "_local_infile", False):
        return "LOAD DATA LOCAL is off on the target connection"
    for source_name, target_name in plan.mapping:
        src, tgt = plan.source.find(source_name), plan.target.find(target_name)
        assert src is not None and tgt is not None
        if not _same_text(src, tgt):
            return f"column {source_name} is {src.family} in the source, {tgt.family} in the target"
    if conn.exec_driver_sql("SELECT @@local_infile").scalar() in (0, "0", "OFF"):
        return "the target server has local_infile off"
    return None


def _same_text(src: ColumnInfo, tgt: ColumnInfo) -> bool:
    """Does PostgreSQL's text of ``src`` (cast as select_list does) say what the row path would
    write into ``tgt``? jsonb's text is Python's json.dumps of it; a json column keeps its own
    spacing, which the row path would not."""
    if src.family is Family.JSON:
        return type(src.type).__name__ == "JSONB" and tgt.family in (Family.JSON, Family.STRING)
    if src.family is Family.UUID:
        return tgt.family in (Family.UUID, Family.STRING)
    if src.family is Family.BOOLEAN:  # MariaDB's BOOLEAN is TINYINT(1)
        return tgt.family in (Family.BOOLEAN, Family.INTEGER)
    return src.family in SUPPORTED and tgt.family is src.family


class CopyIntoLoadData:
    """Key ranges from a PostgreSQL source into a MySQL/MariaDB table."""

    parallel = True

    def __init__(self, plan: TargetPlan) -> None:
        self.plan = plan
        self.expressions = select_list(plan)

    def load(
        self, conn: Connection, quoted_table: str, columns: list[str], source_range: CopyRange
    ) -> int:
        names = [self.plan.quote(c) for c in columns]
        with source_range.stream(self.expressions, binary=False, options=CSV_OPTIONS) as chunks:
            return load_csv(conn, quoted_table, names, chunks)


def load_csv(conn: Connection, quoted_table: str, names: list[str], chunks: Iterator[bytes]) -> int:
    """LOAD DATA LOCAL of CSV ``chunks`` (NULL an unquoted ``NULL``, quotes doubled inside
    quoted values) into ``quoted_table``; refuse the range when the server warned."""
    raw: Any = conn.connection.dbapi_connection
    with _registered(chunks) as name, raw.cursor() as cursor:
        cursor.execute(
            f"LOAD DATA LOCAL INFILE '{name}' INTO TABLE {quoted_table} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
            f"LINES TERMINATED BY '\\n' ({', '.join(names)})"
        )
        loaded = int(cursor.rowcount)
        refuse_if_warned(cursor)
    return loaded


def select_list(plan: TargetPlan) -> list[str]:
    """Each target column as a PostgreSQL expression whose text MariaDB takes as it is."""
    expressions = []
    for source_name, target_name in plan.mapping:
        src, tgt = plan.source.find(source_name), plan.target.find(target_name)
        assert src is not None and tgt is not None
        column = name = pg_name(source_name)
        if src.family is Family.TIMESTAMP:
            if src.timestamp_kind is not TimestampKind.AWARE:
                column = f"({column} AT TIME ZONE {pg_literal(plan.source_zone)})"
            zone = "UTC" if tgt.timestamp_kind is TimestampKind.UTC_NAIVE else plan.target_zone
            column = f"({column} AT TIME ZONE {pg_literal(str(ZoneInfo(zone)))})"
            column = infinity.sql_case(name, f"CAST({column} AS text)", day=False)
        elif src.family is Family.DATE:
            column = infinity.sql_case(name, f"CAST({column} AS text)", day=True)
        elif src.family is Family.BOOLEAN:
            column = f"CAST({column} AS integer)"
        expressions.append(column)
    return expressions
