"""Fast paths that take a whole key range of source rows without making Python objects of them.

PostgreSQL → PostgreSQL has COPY (highmark/destinations/postgres_copy.py). The others, each in
its own module and chosen here by what the two ends can do:

- SQLite → SQLite, both files on this machine: inside the SQLite engine (``sqlite_attach``);
- PostgreSQL → MySQL/MariaDB: ``COPY … TO STDOUT`` streamed into ``LOAD DATA LOCAL INFILE``
  (``mariadb_load``);
- SQLite → MySQL/MariaDB: sqlite3's tuples written as CSV into ``LOAD DATA LOCAL INFILE``
  (``mariadb_from_sqlite``);
- MySQL/MariaDB → MySQL/MariaDB on one server: inside the server (``mariadb_server``);
- SQLite → PostgreSQL: sqlite3's tuples into ``COPY``, SQLite's text timestamps as they are
  (``postgres_from_sqlite``);
- MySQL/MariaDB → PostgreSQL or SQLite: an unbuffered cursor whose values MariaDB already
  formats as the row path would write them, into ``COPY`` or ``executemany`` (``from_mariadb``);
- PostgreSQL → SQLite: a server-side cursor whose values PostgreSQL already put in the row
  path's SQLite form, into ``executemany`` (``sqlite_from_postgres``).

A pair with no fast path, or a job whose rows must pass through Python, keeps the row path. A fast
path that cannot take a batch as it is raises :class:`RangeRefused` before anything of it is
committed; the bisecting write (destinations/bisect.py) then writes that batch again as rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Connection

from highmark.sources.base import CopyRange, RangeRefused
from highmark.sources.conversion import CONVERSION_ERRORS
from highmark.sqlschema import TableSchema
from highmark.sqltypes import ColumnInfo, Converter

if TYPE_CHECKING:
    from highmark.config import ResolvedConnection, TableJobSpec
    from highmark.sources.sql import SqlSource

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class TargetPlan:
    """How the rows of the prepared source map onto the prepared target."""

    source: TableSchema
    source_zone: str
    mapping: list[tuple[str, str]]  # (source column, target column)
    target: TableSchema
    target_zone: str
    writers: list[Converter | None]  # the row path's converters, in mapping order
    quote: Callable[[str], str]


class RangeLoader(Protocol):
    parallel: bool  # can ranges load at once on connections of their own?

    def load(
        self, conn: Connection, quoted_table: str, columns: list[str], source_range: CopyRange
    ) -> int:
        """Put the range's rows into ``quoted_table`` inside ``conn``'s open transaction; return
        how many. Raise RangeRefused when a value would not go in as the row path writes it."""
        ...


def range_loader(
    conn: Connection,
    target: ResolvedConnection,
    source: SqlSource,
    job: TableJobSpec,
    plan: TargetPlan,
) -> RangeLoader | None:
    """The fast path from ``source`` into the target on ``conn``, or None (the row path)."""
    source_dialect, target_dialect = plan.source.dialect, conn.dialect.name
    if source_dialect == "sqlite" and target_dialect == "sqlite":
        from highmark.destinations import sqlite_attach

        reason = sqlite_attach.unavailable(
            source.connection.url, target.url, plan.source, job.target.schema_name
        )
        if reason is None:
            return sqlite_attach.SqliteRanges.open(conn, source.connection.url, target.url, plan)
        log.info("job %s: rows go through Python: %s", job.job_id, reason)
    if source_dialect == "postgresql" and target_dialect == "mysql":
        from highmark.destinations import mariadb_load

        reason = mariadb_load.unavailable(conn, plan)
        if reason is None:
            return mariadb_load.CopyIntoLoadData(plan)
        log.info("job %s: rows go through Python: %s", job.job_id, reason)
    if source_dialect == "sqlite" and target_dialect == "mysql":
        from highmark.destinations import mariadb_from_sqlite, sqlite_attach

        reason = mariadb_from_sqlite.unavailable(plan, source.connection.url)
        if reason is None:
            source_file = sqlite_attach.database_file(source.connection.url)
            return mariadb_from_sqlite.SqliteIntoLoadData(plan, str(source_file))
        log.info("job %s: rows go through Python: %s", job.job_id, reason)
    if source_dialect == "mysql" and target_dialect == "mysql":
        from highmark.destinations import mariadb_server

        reason = mariadb_server.unavailable(conn, source, plan)
        if reason is None:
            database = mariadb_server.source_database(source)
            return mariadb_server.InsertSelectInServer(plan, database, job.primary_key[0])
        log.info("job %s: rows go through Python: %s", job.job_id, reason)
    if source_dialect == "sqlite" and target_dialect == "postgresql":
        from highmark.destinations import postgres_from_sqlite, sqlite_attach

        reason = postgres_from_sqlite.unavailable(source.connection.url)
        if reason is None:
            source_file = sqlite_attach.database_file(source.connection.url)
            return postgres_from_sqlite.SqliteIntoPostgres(plan, str(source_file))
        log.info("job %s: rows go through Python: %s", job.job_id, reason)
    if source_dialect == "mysql" and target_dialect in ("postgresql", "sqlite"):
        from highmark.destinations import from_mariadb

        quote = source.engine.dialect.identifier_preparer.quote
        found = from_mariadb.select_list(plan, target_dialect, quote)
        if not isinstance(found, str):
            if target_dialect == "postgresql":
                return from_mariadb.MariadbIntoPostgres(plan, found, job.primary_key[0])
            return from_mariadb.MariadbIntoSqlite(plan, found, job.primary_key[0])
        log.info("job %s: rows go through Python: %s", job.job_id, found)
    if source_dialect == "postgresql" and target_dialect == "sqlite":
        from highmark.destinations import sqlite_from_postgres

        reason = sqlite_from_postgres.unavailable(plan)
        if reason is None:
            return sqlite_from_postgres.PostgresIntoSqlite(plan)
        log.info("job %s: rows go through Python: %s", job.job_id, reason)
    return None


def columns_of(plan: TargetPlan) -> Iterator[tuple[int, ColumnInfo, ColumnInfo, Converter]]:
    """Each mapped column: its position, its source and target columns, and the row path's
    conversion of one of its source values."""
    from zoneinfo import ZoneInfo

    from highmark.sqltypes import read_converter

    for i, ((source_name, target_name), write) in enumerate(
        zip(plan.mapping, plan.writers, strict=True)
    ):
        src, tgt = plan.source.find(source_name), plan.target.find(target_name)
        assert src is not None and tgt is not None
        yield (
            i,
            src,
            tgt,
            row_path_converter(read_converter(src, ZoneInfo(plan.source_zone)), write),
        )


def row_path_converter(read: Converter | None, write: Converter | None) -> Converter:
    """A source value as the row path would write it: read into its canonical form, written."""

    def convert(value: Any) -> Any:
        if value is None:
            return None
        canonical = read(value) if read is not None else value
        if canonical is None or write is None:
            return canonical
        return write(canonical)

    return convert


@contextmanager
def refusing_unconvertible() -> Iterator[None]:
    """A value that the row path's converter, called by a fast path, cannot read refuses the
    range: the row path reads it again and names the row (the range's transaction rolls back
    what was sent before it)."""
    try:
        yield
    except CONVERSION_ERRORS as exc:
        raise RangeRefused(f"a value could not be converted: {exc}") from exc


def pg_name(name: str) -> str:
    """A PostgreSQL identifier, quoted (a source column in a fast path's SELECT)."""
    return '"' + name.replace('"', '""') + '"'


def pg_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def refuse_if_warned(cursor: Any) -> None:
    """MySQL/MariaDB: a statement that left a warning altered or skipped a value (LOAD DATA
    LOCAL, or a session that is not strict): refuse the range (RangeRefused)."""
    cursor.execute("SHOW WARNINGS LIMIT 1")
    warning = cursor.fetchone()
    if warning is not None:
        raise RangeRefused(f"the target warned: {warning[2]}")
