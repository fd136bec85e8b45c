"""Cron-scheduled upkeep that many workers share (a job's ``reconcile`` schedule): one
``etl_maintenance`` row per task, claimed by a compare-and-set on ``last_run_at`` so that of many
workers that see a fire time come, exactly one runs it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from highmark.errors import StoreError, translate_db_error
from highmark.store.tables import etl_maintenance

if TYPE_CHECKING:
    from highmark.store.store import ControlStore


def claim_fire(store: ControlStore, task: str, fire: datetime, worker_id: str) -> bool:
    """Claim the fire time ``fire`` of ``task``: True for the one caller that finds the task last
    run before it. A task seen for the first time is recorded as run now (it first runs at its
    next fire time)."""
    t = etl_maintenance
    try:
        with store.engine.begin() as connection:
            now = store._now(connection)
            statement: Any
            dialect = connection.dialect.name
            if dialect == "postgresql":
                from sqlalchemy.dialects import postgresql

                statement = postgresql.insert(t).on_conflict_do_nothing()
            elif dialect == "mysql":
                from sqlalchemy.dialects import mysql

                statement = mysql.insert(t).prefix_with("IGNORE")
            else:
                from sqlalchemy.dialects import sqlite

                statement = sqlite.insert(t).on_conflict_do_nothing()
            connection.execute(statement.values(task=task, last_run_at=now, last_worker_id=None))
            result = connection.execute(
                update(t)
                .where(t.c.task == task, t.c.last_run_at < fire)
                .values(last_run_at=now, last_worker_id=worker_id[:255])
            )
            return bool(result.rowcount == 1)
    except SQLAlchemyError as exc:
        raise translate_db_error(exc, StoreError, f"cannot claim {task!r}") from exc
