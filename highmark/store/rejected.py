"""The bad-row quarantine, ``etl_rejected_rows``: rows a run could not load, kept with their data
and error until ``highmark rejected retry`` loads them (or retention purges them with their run).

A row is kept once per job: a later rejection of the same source row (the same source table and
record id, found by ``record_key``) replaces the earlier one, so a batch replayed after a crash, or
a row rejected again by the next run, is never listed twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from highmark.models import RejectedRecord, RejectedRow
from highmark.redact import scrub
from highmark.store.runs import RunHandle, RunLog
from highmark.store.tables import etl_rejected_rows

# Keys deleted per statement (bound parameters stay well under every database's limit).
_CHUNK = 500


def record_key(source_table: str, source_record_id: Any) -> str:
    """A fixed-width key for a row of a source table (its id may be long or composite)."""
    text = json.dumps([source_table, source_record_id], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class RejectedRows(RunLog):
    """The quarantine (a part of :class:`~highmark.store.store.ControlStore`)."""

    def add_rejected_rows(self, handle: RunHandle, rows: Sequence[RejectedRow]) -> None:
        """Quarantine ``rows`` for a live run (which must still own it), replacing earlier
        entries of the same source rows."""
        if not rows:
            return
        with self._begin("cannot quarantine bad rows") as connection:
            now = self._now(connection)
            self._cas_run(connection, handle, heartbeat_at=now)
            values = [_values(handle.job_id, handle.run_id, row, now) for row in rows]
            _forget(connection, handle.job_id, [v["record_key"] for v in values])
            connection.execute(insert(etl_rejected_rows), values)

    def rejected_rows(
        self,
        job_id: str,
        *,
        limit: int | None = None,
        run_id: int | None = None,
        before: int | None = None,
        newest_first: bool = False,
    ) -> list[RejectedRecord]:
        """A job's quarantined rows, oldest first (or newest first): only ``run_id``'s, only
        those quarantined before row ``before`` (a page's cursor: ids only grow)."""
        t = etl_rejected_rows
        order = t.c.rejected_id.desc() if newest_first else t.c.rejected_id
        query = select(t).where(*_filters(job_id, run_id, before)).order_by(order)
        if limit is not None:
            query = query.limit(limit)
        with self._begin("cannot read the rejected rows") as connection:
            return [RejectedRecord.from_row(r) for r in connection.execute(query)]

    def count_rejected(self, job_id: str, *, run_id: int | None = None) -> int:
        with self._begin("cannot count the rejected rows") as connection:
            found = connection.execute(
                select(func.count()).where(*_filters(job_id, run_id, None))
            ).scalar_one()
        return int(found)

    def release_rejected(self, job_id: str, rejected_ids: Sequence[int]) -> int:
        """Remove quarantined rows that went in (or are gone from the source)."""
        removed = 0
        with self._begin("cannot remove rejected rows") as connection:
            for start in range(0, len(rejected_ids), _CHUNK):
                chunk = list(rejected_ids[start : start + _CHUNK])
                removed += connection.execute(
                    delete(etl_rejected_rows).where(
                        etl_rejected_rows.c.job_id == job_id,
                        etl_rejected_rows.c.rejected_id.in_(chunk),
                    )
                ).rowcount
        return removed

    def rejected_again(self, job_id: str, rows: Sequence[RejectedRow]) -> None:
        """Record a retry that the target refused again: the new error, when, how many tries."""
        with self._begin("cannot record the retry of rejected rows") as connection:
            now = self._now(connection)
            for row in rows:
                table = etl_rejected_rows
                connection.execute(
                    update(table)
                    .where(
                        table.c.job_id == job_id,
                        table.c.record_key == record_key(row.source_table, row.source_record_id),
                    )
                    .values(
                        source_data=row.source_data,
                        error_message=scrub(row.error),
                        error_column=row.column,
                        error_constraint=row.constraint,
                        retried_at=now,
                        retry_count=table.c.retry_count + 1,
                    )
                )


def _filters(job_id: str, run_id: int | None, before: int | None) -> list[Any]:
    t = etl_rejected_rows
    found: list[Any] = [t.c.job_id == job_id]
    if run_id is not None:
        found.append(t.c.run_id == run_id)
    if before is not None:
        found.append(t.c.rejected_id < before)
    return found


def _forget(connection: Connection, job_id: str, keys: list[str]) -> None:
    for start in range(0, len(keys), _CHUNK):
        connection.execute(
            delete(etl_rejected_rows).where(
                etl_rejected_rows.c.job_id == job_id,
                etl_rejected_rows.c.record_key.in_(keys[start : start + _CHUNK]),
            )
        )


def _values(job_id: str, run_id: int, row: RejectedRow, now: datetime) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "run_id": run_id,
        "source_table": row.source_table,
        "source_record_id": json.dumps(row.source_record_id, default=str),
        "record_key": record_key(row.source_table, row.source_record_id),
        "source_data": row.source_data,
        "error_message": scrub(row.error),
        "error_column": row.column,
        "error_constraint": row.constraint,
        "rejected_at": now,
        "retry_count": 0,
    }
