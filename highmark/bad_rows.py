"""What a run does with bad rows: rows the target refused for their values (found by bisection,
highmark/destinations/bisect.py; a CDC job's changes too, highmark/destinations/changes.py; an
API job's records, record_bisect.py) or that the source could not convert.

``on_bad_rows: fail`` (the default) writes the batch's other rows, then fails the run with the
first :data:`MAX_DETAILED_ROWS` bad rows in ``error_details`` (their primary key, their data, the
column and constraint the database named) and a count of all of them. ``on_bad_rows: quarantine``
hands them to the run, which keeps them in ``etl_rejected_rows`` and counts them in
``rows_rejected``; the run goes on, and its watermark moves past them.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from highmark.checkpoint import encode_value
from highmark.config.tables import OnBadRows, TableJobSpec
from highmark.errors import DestinationError
from highmark.models import RefusedRow, RejectedRow
from highmark.movers.base import RunContext

MAX_DETAILED_ROWS = 10


class BadRowsError(DestinationError):
    """Rows were refused and the job says ``on_bad_rows: fail``: a human fixes the rows or the
    target (permanent: the same rows would be refused again)."""

    retryable = False


class BadRows:
    """One run's handling of one table's bad rows, by the job's ``on_bad_rows``."""

    def __init__(
        self,
        ctx: RunContext,
        *,
        policy: OnBadRows,
        source_table: str,
        target_table: str,
        primary_key: list[str],
        staging: bool = False,
    ) -> None:
        self.ctx = ctx
        # A full load's rows go to its staging table; the target stays as it was until the
        # staging ends (a failed run leaves it for the next to resume).
        self.staging = staging
        self.policy = policy
        self.source_table = source_table
        self.target_table = target_table
        self.primary_key = primary_key

    @classmethod
    def of(cls, ctx: RunContext, job: TableJobSpec, *, staging: bool = False) -> BadRows:
        """The bad rows of a SQL-table job (a table or a CDC job); ``staging``: of a full
        load's staging step."""
        return cls(
            ctx,
            policy=job.on_bad_rows,
            source_table=job.source.table,
            target_table=job.target.table,
            primary_key=job.primary_key,
            staging=staging,
        )

    def handle(self, refused: Iterable[RefusedRow]) -> None:
        """Quarantine ``refused``, or fail the run with them."""
        self.handle_rejected([self.record(r) for r in refused])

    def handle_rejected(self, rows: list[RejectedRow]) -> None:
        """Quarantine ``rows`` (already keyed and put as JSON), or fail the run with them."""
        if not rows:
            return
        if self.policy == "quarantine":
            self.ctx.reject(rows)
            return
        raise self.error(rows)

    def record(self, refused: RefusedRow) -> RejectedRow:
        return rejected_row(refused, self.source_table, self.primary_key)

    def error(self, rows: list[RejectedRow]) -> BadRowsError:
        first = rows[0]
        where = f" (column {first.column})" if first.column else ""
        more = f" and {len(rows) - 1} more" if len(rows) > 1 else ""
        others = (
            "the other rows were staged; the target is not replaced until every row is"
            if self.staging
            else "the batch's other rows were written"
        )
        return BadRowsError(
            f"{len(rows)} bad row(s) of {self.source_table} not loaded into {self.target_table}: "
            f"{_key_text(self.primary_key, first.source_record_id)}{more}: {first.error}{where}; "
            f"{others}. Fix the rows or the target, or set on_bad_rows: quarantine",
            source_table=self.source_table,
            source_record_id=first.source_record_id,
            source_data=first.source_data,
            column=first.column,
            constraint=first.constraint,
            bad_rows=[r.to_json() for r in rows[:MAX_DETAILED_ROWS]],
            bad_rows_count=len(rows),
        )


def rejected_row(refused: RefusedRow, source_table: str, primary_key: list[str]) -> RejectedRow:
    """A refused row as it is reported and kept: its key, its data as JSON, the error."""
    return RejectedRow(
        source_table=source_table,
        source_record_id=record_id(refused.row, primary_key),
        source_data={k: plain_json(v) for k, v in refused.row.items()},
        error=refused.refusal.message,
        column=refused.refusal.column,
        constraint=refused.refusal.constraint,
    )


def record_id(row: dict[str, Any], primary_key: list[str]) -> Any:
    """A row's primary key as JSON: the value itself, or a list for a key of several columns."""
    values = [encode_value(_lookup(row, name)) for name in primary_key]
    return values[0] if len(values) == 1 else values


def plain_json(value: Any) -> Any:
    """A value as plain JSON a person reads (ISO timestamps, exact decimals as text)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value


def _key_text(primary_key: list[str], value: Any) -> str:
    values = value if isinstance(value, list) and len(primary_key) > 1 else [value]
    return ", ".join(f"{name} {v}" for name, v in zip(primary_key, values, strict=False))


def _lookup(row: dict[str, Any], name: str) -> Any:
    if name in row:
        return row[name]
    lowered = name.lower()
    return next((v for k, v in row.items() if k.lower() == lowered), None)
