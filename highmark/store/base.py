"""What every part of the control store shares: its engine, transactions whose errors become
:class:`~highmark.errors.StoreError`, and the control database's clock.

The control store is one class, :class:`~highmark.store.store.ControlStore`, assembled from one
module per noun (runs.py, watermarks.py, store.py for jobs and the schema), each on this base.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import SQLAlchemyError

from highmark.clock import ensure_utc
from highmark.errors import JobNotFoundError, StoreError, translate_db_error
from highmark.store.tables import etl_jobs


class StoreBase:
    """The engine of the control database, and how its parts talk to it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _errors(self, context: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise translate_db_error(exc, StoreError, context) from exc

    @contextmanager
    def _begin(self, context: str) -> Iterator[Connection]:
        with self._errors(context), self.engine.begin() as connection:
            yield connection

    def _now(self, connection: Connection) -> datetime:
        """The control database's clock, as an aware UTC datetime."""
        dialect = connection.dialect.name
        if dialect == "postgresql":
            value = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
        elif dialect == "mysql":
            value = connection.execute(text("SELECT UTC_TIMESTAMP(6)")).scalar_one()
        else:
            value = connection.execute(
                text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
            ).scalar_one()
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return ensure_utc(value)

    def now(self) -> datetime:
        with self._begin("cannot read the control store's clock") as connection:
            return self._now(connection)

    def _require_job(self, connection: Connection, job_id: str) -> None:
        found = connection.execute(select(etl_jobs.c.job_id).where(etl_jobs.c.job_id == job_id))
        if found.first() is None:
            raise JobNotFoundError(f"unknown job {job_id!r}")


def for_update(query: Any, connection: Connection) -> Any:
    """``SELECT … FOR UPDATE`` where the database has row locks (SQLite locks the whole file)."""
    return query if connection.dialect.name == "sqlite" else query.with_for_update()
