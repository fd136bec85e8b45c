"""The connection, transactions and names of one job's target table: what the parts of the SQL
destination (highmark/destinations/sql.py) share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.types import NullType

from highmark.config import ResolvedConnection, TableJobSpec, TableRef
from highmark.db import get_engine
from highmark.destinations import ranges
from highmark.errors import DestinationError, translate_db_error
from highmark.sqlschema import TableSchema, raw_table
from highmark.sqltypes import Converter


class TargetTable:
    """The target table of one job: its connection and the columns a job maps onto it."""

    def __init__(self, connection: ResolvedConnection, table: TableRef, job: TableJobSpec) -> None:
        self.connection = connection
        self.ref = table
        self.job = job
        self.zone = ZoneInfo(connection.timezone)
        self.engine = get_engine(connection.url, "target")
        self.dialect = self.engine.dialect.name
        self._conn: Connection | None = None
        self._target: TableSchema | None = None
        self._mapping: list[tuple[str, str]] = []  # (source column, target column)
        self._converters: list[Converter | None] = []
        self._temp_ready = False
        self._source: TableSchema | None = None
        self._source_zone = "UTC"
        self._copy_plan: tuple[list[str], bool] | None = None
        self._ranges: ranges.RangeLoader | None = None  # a fast path of destinations/ranges.py

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _errors(self, context: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            where = f"target {self.ref.table} on {self.connection.name}"
            raise translate_db_error(exc, DestinationError, f"{context} {where}") from exc

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            with self._errors("cannot connect to"):
                self._conn = self.engine.connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                if self._conn.in_transaction():
                    self._conn.rollback()
                self._conn.close()
            except SQLAlchemyError:
                pass  # a broken connection is closed either way
            self._conn = None

    @contextmanager
    def _transaction(self, context: str) -> Iterator[Connection]:
        with self._errors(context):
            try:
                with fresh_transaction(self.conn) as conn:
                    yield conn
            except SQLAlchemyError:
                self._temp_ready = self._temp_ready and self.dialect != "sqlite"
                raise

    # ------------------------------------------------------------------ columns

    @property
    def target(self) -> TableSchema:
        assert self._target is not None, "prepare() first"
        return self._target

    def _tcol(self, source_name: str) -> str:
        col = self.target.find(source_name)
        assert col is not None
        return col.name

    def _target_clause(self) -> TableClause:
        return raw_table(self.target.name, self.target.schema, [t for _, t in self._mapping])

    # ------------------------------------------------------------------ quoting

    def _empty_copy_sql(self, quoted_name: str, *, temporary: bool) -> str:
        """CREATE TABLE … AS an empty copy of the target's mapped columns, with their types."""
        columns = ", ".join(self._quote(t) for _, t in self._mapping)
        kind = "TEMPORARY TABLE" if temporary else "TABLE"
        query = f"SELECT {columns} FROM {self._quoted_target()}"
        if self.dialect == "postgresql":
            return f"CREATE {kind} {quoted_name} AS {query} WITH NO DATA"
        return f"CREATE {kind} {quoted_name} AS {query} WHERE 1 = 0"

    def _quote(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def _quote_qualified(self, schema: str | None, name: str) -> str:
        return f"{self._quote(schema)}.{self._quote(name)}" if schema else self._quote(name)

    def _quoted_target(self) -> str:
        return self._quote_qualified(self.target.schema, self.target.name)


@contextmanager
def fresh_transaction(conn: Connection) -> Iterator[Connection]:
    """A transaction of its own on ``conn``: what the connection began by itself (SQLAlchemy
    begins on the first statement) is committed first, so it never swallows this one."""
    if conn.in_transaction():
        conn.commit()
    with conn.begin():
        yield conn


def bind(value: Any) -> Any:
    """``value`` as a bound parameter of no SQL type (the driver takes it as converted)."""
    return bindparam(None, value, type_=NullType())
