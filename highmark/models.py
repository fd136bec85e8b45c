"""Frozen records and enums shared by every layer: load types, run states, watermarks, runs."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from highmark.clock import ensure_utc


class LoadType(enum.StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"
    CDC = "cdc"


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TriggeredBy(enum.StrEnum):
    SCHEDULER = "scheduler"
    MANUAL = "manual"
    API = "api"


class WatermarkType(enum.StrEnum):
    TIMESTAMP = "timestamp"
    INTEGER = "integer"
    # A CDC job's place in the source's log: ``id`` is the position as an integer (PostgreSQL:
    # the LSN; MySQL/MariaDB: binlog file number * 2**32 + offset), ``ts`` the commit time of the
    # last transaction applied (informative: positions alone order the mark).
    LOG_POSITION = "log_position"


@dataclass(frozen=True, order=False)
class Watermark:
    """A position in a source table's key order.

    ``timestamp`` watermarks compare by ``(ts, id)`` when the job has a tiebreaker (``id`` is then
    the tiebreaker value of the last row loaded at ``ts``); ``integer`` watermarks compare by
    ``id``; ``log_position`` watermarks compare by ``id`` (the position in the log) and carry the
    commit time of the last change applied in ``ts``. Values are kept in the source's native
    precision and never rounded.
    """

    type: WatermarkType
    ts: datetime | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if self.ts is not None:
            object.__setattr__(self, "ts", ensure_utc(self.ts))
        if self.type is WatermarkType.TIMESTAMP and self.ts is None:
            raise ValueError("a timestamp watermark needs a timestamp")
        if self.type is not WatermarkType.TIMESTAMP and self.id is None:
            raise ValueError(f"a {self.type.value} watermark needs an integer")

    def key(self) -> tuple[Any, ...]:
        if self.type is not WatermarkType.TIMESTAMP:
            return (self.id,)
        # A missing tiebreaker sorts below every id: (ts, None) < (ts, any id).
        return (self.ts, -(2**63) if self.id is None else self.id)

    def __lt__(self, other: Watermark) -> bool:
        return self.key() < other.key()

    def __le__(self, other: Watermark) -> bool:
        return self.key() <= other.key()

    def __gt__(self, other: Watermark) -> bool:
        return self.key() > other.key()

    def __ge__(self, other: Watermark) -> bool:
        return self.key() >= other.key()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "timestamp": self.ts.isoformat() if self.ts else None,
            "integer": self.id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Watermark:
        ts = data.get("timestamp")
        return cls(
            type=WatermarkType(data["type"]),
            ts=datetime.fromisoformat(ts) if ts else None,
            id=data.get("integer"),
        )

    def __str__(self) -> str:
        if self.type is WatermarkType.INTEGER:
            return str(self.id)
        if self.type is WatermarkType.LOG_POSITION:
            when = (
                "" if self.ts is None else f" (commit {self.ts.isoformat().replace('+00:00', 'Z')})"
            )
            return f"position {self.id}{when}"
        assert self.ts is not None
        text = self.ts.isoformat().replace("+00:00", "Z")
        return text if self.id is None else f"{text} / {self.id}"


def later_of(a: Watermark | None, b: Watermark | None) -> Watermark | None:
    """The greater of two watermarks; a watermark never moves backward."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b > a else a


@dataclass(frozen=True)
class MarkUpdate:
    """A mark a run commits with its success (the store never moves it backward)."""

    source_table: str
    column: str
    value: Watermark


@dataclass(frozen=True)
class Backfill:
    """A window ``(low, high]`` of an incremental job to load again without moving its mark."""

    low: Watermark
    high: Watermark

    def __post_init__(self) -> None:
        if self.low.type is not self.high.type:
            raise ValueError("a backfill's bounds must be of one type")

    def to_json(self) -> dict[str, Any]:
        """As ``etl_job_runs.backfill_window``: the bounds as typed on the command line."""
        return {"from": _bound(self.low), "to": _bound(self.high)}


def _bound(mark: Watermark) -> str:
    if mark.type is WatermarkType.INTEGER or mark.id is None:
        return str(mark)
    assert mark.ts is not None
    return mark.ts.isoformat().replace("+00:00", "Z") + f"/{mark.id}"


@dataclass(frozen=True)
class Window:
    """The rows a run reads: keys in ``(low, high]``.

    ``low`` is the committed watermark or the resumed checkpoint position (``None``: from the
    beginning). ``high`` is the safe upper bound (``None`` when the load has no bound, e.g. full
    loads); ``high_reason`` says why it is where it is.
    """

    low: Watermark | None
    high: datetime | int | None
    high_reason: str | None = None


@dataclass(frozen=True)
class Counts:
    """Row counts of a run, as recorded in ``etl_job_runs``."""

    rows_read: int = 0
    rows_written: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    rows_rejected: int = 0  # bad rows quarantined in etl_rejected_rows (on_bad_rows: quarantine)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.rows_read + other.rows_read,
            self.rows_written + other.rows_written,
            self.rows_updated + other.rows_updated,
            self.rows_deleted + other.rows_deleted,
            self.rows_rejected + other.rows_rejected,
        )

    def with_read(self, rows_read: int) -> Counts:
        return replace(self, rows_read=rows_read)


@dataclass(frozen=True)
class JobRecord:
    """A row of ``etl_jobs``."""

    job_id: str
    job_name: str
    description: str | None
    source_table: str | None
    target_table: str | None
    load_type: str
    schedule: str | None
    is_active: bool
    timeout_seconds: int | None
    retry_count: int | None
    created_at: datetime | None
    updated_at: datetime | None
    checkpoint_data: dict[str, Any] | None
    schedule_timezone: str | None = None
    next_due_at: datetime | None = None
    is_active_override: bool | None = None
    backfill_checkpoint: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__ if f in m})


@dataclass(frozen=True)
class RunRecord:
    """A row of ``etl_job_runs``."""

    run_id: int
    job_id: str
    run_status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: int | None
    rows_read: int
    rows_written: int
    rows_updated: int
    rows_deleted: int
    watermark_start: datetime | None
    watermark_end: datetime | None
    watermark_start_integer: int | None
    watermark_end_integer: int | None
    error_message: str | None
    error_details: dict[str, Any] | None
    triggered_by: str | None
    host: str | None = None
    pid: int | None = None
    heartbeat_at: datetime | None = None
    owner_token: str | None = None
    upper_bound: str | None = None
    upper_bound_reason: str | None = None
    notes: list[str] | None = None
    scheduled_for: datetime | None = None
    attempt: int | None = None
    worker_id: str | None = None
    cancel_requested: bool | None = None
    backfill_window: dict[str, Any] | None = None
    idempotency_key: str | None = None
    rows_rejected: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> RunRecord:
        m: dict[str, Any] = dict(row._mapping)
        m["run_status"] = RunStatus(m["run_status"])
        fields: dict[str, Any] = {f: m.get(f) for f in cls.__dataclass_fields__}
        return cls(**fields)

    @property
    def succeeded(self) -> bool:
        return self.run_status is RunStatus.SUCCESS

    @property
    def is_backfill(self) -> bool:
        return self.backfill_window is not None

    def to_json(self) -> dict[str, Any]:
        return {
            f: _jsonable(getattr(self, f)) for f in self.__dataclass_fields__ if f != "owner_token"
        }


@dataclass(frozen=True)
class Refusal:
    """Why a row could not be loaded: the database's (or the conversion's) one-line message, and
    the column and constraint at fault when they are known."""

    message: str
    column: str | None = None
    constraint: str | None = None


@dataclass(frozen=True)
class RefusedRow:
    """A row the target refused, or the source could not convert, as the destination would have
    received it (a row the source could not convert: as the source gave it)."""

    row: dict[str, Any]
    refusal: Refusal


@dataclass(frozen=True)
class RejectedRow:
    """A row the target or the source refused (a bad row), as a run reports it."""

    source_table: str
    source_record_id: Any  # the primary key's value (a list when the key has several columns)
    source_data: dict[str, Any]  # the row as JSON, as the destination received it
    error: str
    column: str | None = None
    constraint: str | None = None

    def to_json(self) -> dict[str, Any]:
        found = {
            "source_record_id": self.source_record_id,
            "source_data": self.source_data,
            "error": self.error,
            "column": self.column,
            "constraint": self.constraint,
        }
        return {k: v for k, v in found.items() if v is not None}


@dataclass(frozen=True)
class RejectedRecord:
    """A row of ``etl_rejected_rows``: a quarantined bad row."""

    rejected_id: int
    job_id: str
    run_id: int | None
    source_table: str
    source_record_id: Any
    source_data: dict[str, Any] | None
    error_message: str
    error_column: str | None
    error_constraint: str | None
    rejected_at: datetime
    retried_at: datetime | None = None
    retry_count: int = 0

    @classmethod
    def from_row(cls, row: Any) -> RejectedRecord:
        m: dict[str, Any] = dict(row._mapping)
        m["source_record_id"] = json.loads(m["source_record_id"])
        m["retry_count"] = m.get("retry_count") or 0
        fields: dict[str, Any] = {f: m.get(f) for f in cls.__dataclass_fields__}
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        return {f: _jsonable(getattr(self, f)) for f in self.__dataclass_fields__}


@dataclass(frozen=True)
class WatermarkRecord:
    """A row of ``etl_watermarks``."""

    job_id: str
    source_table: str
    watermark_column: str
    watermark_type: str
    last_value_timestamp: datetime | None
    last_value_integer: int | None
    last_successful_run_id: int | None
    last_updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> WatermarkRecord:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})

    def watermark(self) -> Watermark | None:
        if self.watermark_type in (WatermarkType.INTEGER.value, WatermarkType.LOG_POSITION.value):
            if self.last_value_integer is None:
                return None
            kind = WatermarkType(self.watermark_type)
            ts = self.last_value_timestamp if kind is WatermarkType.LOG_POSITION else None
            return Watermark(kind, ts=ts, id=self.last_value_integer)
        if self.last_value_timestamp is None:
            return None
        return Watermark(
            WatermarkType.TIMESTAMP, ts=self.last_value_timestamp, id=self.last_value_integer
        )

    def to_json(self) -> dict[str, Any]:
        return {f: _jsonable(getattr(self, f)) for f in self.__dataclass_fields__}


@dataclass(frozen=True)
class BatchResult:
    """What a destination reports for one written batch."""

    counts: Counts = field(default_factory=Counts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return ensure_utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, enum.Enum):
        return value.value
    return value


def to_json_text(value: Any) -> str:
    """Serialise control-table values for ``--json`` output (ISO 8601 UTC timestamps)."""
    return json.dumps(value, default=_jsonable, indent=2, sort_keys=False)
