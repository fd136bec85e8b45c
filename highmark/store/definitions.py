"""Reading a job's definition as ``etl_jobs.definition`` keeps it (for jobs gone from the file)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from highmark.store.tables import etl_jobs

if TYPE_CHECKING:
    from highmark.store.store import ControlStore


def job_definition(store: ControlStore, job_id: str) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        value = conn.execute(
            select(etl_jobs.c.definition).where(etl_jobs.c.job_id == job_id)
        ).scalar()
    return value if isinstance(value, dict) else None
