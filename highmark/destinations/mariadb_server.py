"""MySQL/MariaDB → MySQL/MariaDB on one server: each key range moves inside the server, with
one ``INSERT INTO target SELECT … FROM source_database.table WHERE <range>`` on the target's
connection.

Only where the values need no conversion: the same family on both sides, and timestamps whose
wall time, as the session reads it, is in the same zone on both sides (``TIMESTAMP`` columns
read in UTC, ``DATETIME`` in its connection's zone). A statement the target refuses for a value
(strict mode), or one that left a warning (a value altered), is rolled back and its batch
written again as rows.

Each range is read as one stretch of the source's clustered index, not a scan of the table
(highmark/sources/mariadb_stretch.py).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from highmark.destinations.ranges import TargetPlan, refuse_if_warned
from highmark.sources.base import CopyRange, RangeRefused
from highmark.sources.mariadb_stretch import key_bounded
from highmark.sources.postgres_copy import PostgresCopyRange
from highmark.sqltypes import ColumnInfo, Family, TimestampKind

# The server a connection is on (two URLs may name one server differently).
_IDENTITY = "SELECT @@hostname, @@port, @@datadir"
# MySQL error numbers of a value or a row the target refuses (strict mode, keys, checks).
DATA_ERRORS = {1048, 1062, 1264, 1265, 1292, 1366, 1406, 1452, 3819, 4025}


def unavailable(conn: Connection, source: Any, plan: TargetPlan) -> str | None:
    """Why ranges cannot move inside the server, or None. ``source`` is the SqlSource."""
    for source_name, target_name in plan.mapping:
        src, tgt = plan.source.find(source_name), plan.target.find(target_name)
        assert src is not None and tgt is not None
        if src.family is not tgt.family or src.family in (Family.JSON, Family.OTHER):
            return f"column {source_name} is {src.family} in the source, {tgt.family} in the target"
        if src.family is Family.TIMESTAMP and _zone(src, plan.source_zone) != _zone(
            tgt, plan.target_zone
        ):
            return f"column {source_name}'s timestamps would change time zone"
    with source.engine.connect() as source_conn:
        if tuple(source_conn.exec_driver_sql(_IDENTITY).one()) != tuple(
            conn.exec_driver_sql(_IDENTITY).one()
        ):
            return "the source is on another server"
        database = source_conn.exec_driver_sql("SELECT DATABASE()").scalar()
    origin = f"{plan.quote(plan.source.schema or str(database))}.{plan.quote(plan.source.name)}"
    try:
        conn.exec_driver_sql(f"SELECT 1 FROM {origin} WHERE 1 = 0").all()
    except SQLAlchemyError:
        conn.rollback()
        return "the target's user cannot read the source table"
    return None


def _zone(column: ColumnInfo, connection_zone: str) -> ZoneInfo:
    """The zone of a column's wall time as the session reads it (TIMESTAMP: the session's UTC)."""
    utc = column.timestamp_kind is TimestampKind.UTC_NAIVE
    return ZoneInfo("UTC" if utc else connection_zone)


class InsertSelectInServer:
    parallel = True

    def __init__(self, plan: TargetPlan, source_database: str, primary_key: str) -> None:
        self.plan = plan
        quote = plan.quote
        schema = plan.source.schema or source_database
        self.origin = f"{quote(schema)}.{quote(plan.source.name)} AS {quote(plan.source.name)}"
        self.select = ", ".join(f"{quote(plan.source.name)}.{quote(s)}" for s, _ in plan.mapping)
        found = plan.source.find(primary_key)
        assert found is not None
        # The first column of the primary key: InnoDB's rows are stored in its order.
        self.key = f"{quote(plan.source.name)}.{quote(found.name)}"

    def load(
        self, conn: Connection, quoted_table: str, columns: list[str], source_range: CopyRange
    ) -> int:
        from pymysql import err

        assert isinstance(source_range, PostgresCopyRange)
        names = ", ".join(self.plan.quote(c) for c in columns)
        raw: Any = conn.connection.dbapi_connection
        with raw.cursor() as cursor:
            found = key_bounded(cursor, self.key, self.origin, source_range, conn.dialect)
            if found is None:
                return 0  # the range's rows are gone (deleted since it was probed)
            bounded, bounds = found
            try:
                cursor.execute(
                    f"INSERT INTO {quoted_table} ({names}) SELECT {self.select} "
                    f"FROM {self.origin} WHERE {bounded}",
                    bounds,
                )
            except (err.IntegrityError, err.DataError, err.OperationalError) as exc:
                if exc.args and exc.args[0] in DATA_ERRORS:
                    raise RangeRefused(f"the target refused a row: {exc.args[-1]}") from exc
                raise
            loaded = int(cursor.rowcount)
            refuse_if_warned(cursor)
        return loaded


def source_database(source: Any) -> str:
    with source.engine.connect() as conn:
        return str(conn.exec_driver_sql("SELECT DATABASE()").scalar())
