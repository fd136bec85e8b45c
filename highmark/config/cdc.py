"""The CDC and reconcile sections of a SQL-table job.

``cdc:`` tunes a ``load_type: cdc`` job (the log it reads: slot and publication names on
PostgreSQL, the replica server id on MySQL/MariaDB; the lag past which an alert fires).
``reconcile:`` schedules ``highmark reconcile`` for any SQL job under the worker.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator

from highmark.config.common import Strict, check_zone

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_PG_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
# The reconcile's top-level key ranges hold about this many rows.
DEFAULT_RECONCILE_CHUNK = 10_000


def parse_size(value: str | int | float) -> int:
    """``"1GB"``, ``"500MB"``, ``"2GiB"`` or a number of bytes -> bytes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        size = float(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a size such as 500MB, 1GB or 2GiB")
        unit = match.group(2).lower() if match.group(2) else None
        size = float(match.group(1)) * _SIZE_UNITS[unit]
    if size < 0:
        raise ValueError("a size cannot be negative")
    return int(size)


def default_log_name(job_id: str) -> str:
    """``highmark_<job_id>`` as a PostgreSQL slot may be named: lower case, digits, ``_``."""
    name = re.sub(r"[^a-z0-9_]", "_", f"highmark_{job_id}".lower())
    return name[:63]


class CdcSpec(Strict):
    """``cdc:`` of a ``load_type: cdc`` job; every key is optional."""

    # PostgreSQL: the logical replication slot and the publication (default highmark_<job_id>).
    slot: str | None = None
    publication: str | None = None
    # MySQL/MariaDB: the server id the binlog reader registers with (default: from the job id).
    server_id: Annotated[int, Field(ge=1, le=4_294_967_295)] | None = None
    # Bytes of log the source may keep for this job before a `cdc_lag` alert fires ("1GB").
    max_lag: int | None = None

    @field_validator("slot", "publication")
    @classmethod
    def _pg_name(cls, value: str | None) -> str | None:
        if value is not None and not _PG_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid name (lower-case letters, digits and _, at most 63)"
            )
        return value

    @field_validator("max_lag", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int | None:
        return None if value is None else parse_size(value)


class ReconcileSettings(Strict):
    """``reconcile:`` of a SQL job: run ``highmark reconcile`` on a cron schedule (worker)."""

    schedule: str | None = None
    schedule_timezone: str | None = None
    # Fix what differs (a run of its own in etl_job_runs); otherwise a difference fails that run.
    repair: bool = False
    chunk_rows: Annotated[int, Field(ge=10, le=10_000_000)] = DEFAULT_RECONCILE_CHUNK

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from croniter import croniter

        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression")
        return value

    @field_validator("schedule_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)
