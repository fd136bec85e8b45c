"""The checkpoint a SQL run keeps in ``etl_jobs.checkpoint_data``, and its validation.

Keys follow the reference (shared/reference/003): ``batch_number``, ``total_rows_processed``,
``recovery_mode``; the keyset position uses ``etl_watermarks``' names (``last_value_timestamp``,
``last_value_integer``). The window's upper bound is pinned here so that a resumed run reads the
same window. Values that JSON cannot hold (timestamps, decimals in a primary key) are tagged.
"""

from __future__ import annotations

import base64
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from highmark.errors import CheckpointEditError, CheckpointError
from highmark.models import Watermark, WatermarkType


class DoneRange(BaseModel):
    """A key range ``(after, upto]`` of the window that a parallel load committed."""

    model_config = ConfigDict(frozen=True)

    after_timestamp: datetime | None = None
    after_integer: int | None = None
    upto_timestamp: datetime | None = None
    upto_integer: int | None = None


class RunCheckpoint(BaseModel):
    """Progress of a run, saved after every committed batch."""

    model_config = ConfigDict(extra="allow", frozen=True)

    run_id: int
    mode: Literal["incremental", "full"]
    batch_number: int = 0
    total_rows_processed: int = 0
    recovery_mode: bool = False
    watermark_type: WatermarkType | None = None
    last_value_timestamp: datetime | None = None
    last_value_integer: int | None = None
    inclusive: bool = False
    direct: bool = False  # a first load writing straight into the (then empty) target
    last_pk: list[Any] | None = None
    max_key_timestamp: datetime | None = None
    max_key_integer: int | None = None
    window_high: datetime | int | None = None
    window_high_reason: str | None = None
    last_checkpoint_at: datetime | None = None
    # A parallel first load (highmark/parallel.py): the ranges loaded past ``last_value_*``.
    parallel: bool = False
    done_ranges: list[DoneRange] | None = None

    @classmethod
    def parse(cls, job_id: str, data: dict[str, Any]) -> RunCheckpoint:
        return parse_checkpoint(job_id, cls, data)

    def position(self) -> Watermark | None:
        return _watermark(self.watermark_type, self.last_value_timestamp, self.last_value_integer)

    def max_key(self) -> Watermark | None:
        return _watermark(self.watermark_type, self.max_key_timestamp, self.max_key_integer)

    def done(self) -> list[tuple[Watermark | None, Watermark]]:
        """The ranges a parallel load committed past :meth:`position`, in key order."""
        ranges = []
        for r in self.done_ranges or []:
            upto = _watermark(self.watermark_type, r.upto_timestamp, r.upto_integer)
            if upto is None:
                raise CheckpointError(
                    f"the checkpoint of run {self.run_id} has a done range without its end "
                    "(upto_timestamp / upto_integer)",
                    retryable=False,
                )
            ranges.append(
                (_watermark(self.watermark_type, r.after_timestamp, r.after_integer), upto)
            )
        return ranges

    def primary_key(self) -> tuple[Any, ...] | None:
        return None if self.last_pk is None else tuple(decode_value(v) for v in self.last_pk)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


M = TypeVar("M", bound=BaseModel)


def parse_checkpoint(job_id: str, model: type[M], data: dict[str, Any]) -> M:
    """A job's saved checkpoint, validated by its kind's model; a CheckpointError that says how
    to look at it or start over when it does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"]) or "(whole)"
        raise CheckpointError(
            f"the checkpoint of job {job_id} is invalid: {key}: {error['msg']} "
            f"(inspect it with `highmark checkpoint show {job_id}`, "
            f"or start over with `highmark checkpoint reset {job_id}`)",
            retryable=False,
        ) from None


_partial_models: dict[type[BaseModel], type[BaseModel]] = {}


def validate_partial(job_id: str, model: type[BaseModel], data: dict[str, Any]) -> None:
    """Check the keys a checkpoint has (an edited one may lack some) against their types in
    ``model`` (the job kind's checkpoint model); raise CheckpointError naming the key."""
    partial = _partial_models.get(model)
    if partial is None:
        # Every field of the model, optional, each with its own type.
        fields: dict[str, Any] = {
            name: (field.annotation | None, None)  # type: ignore[operator]
            for name, field in model.model_fields.items()
        }
        partial = create_model(
            f"Partial{model.__name__}", __config__=ConfigDict(extra="allow"), **fields
        )
        _partial_models[model] = partial
    try:
        partial.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"]) or "(whole)"
        raise CheckpointEditError(
            f"checkpoint of job {job_id}: {key}: {error['msg']}; nothing was changed",
            retryable=False,
        ) from None


def _watermark(
    kind: WatermarkType | None, ts: datetime | None, integer: int | None
) -> Watermark | None:
    if kind is WatermarkType.INTEGER and integer is not None:
        return Watermark(kind, id=integer)
    if kind is WatermarkType.TIMESTAMP and ts is not None:
        return Watermark(kind, ts=ts, id=integer)
    return None


def watermark_fields(prefix: str, value: Watermark | None) -> dict[str, Any]:
    """``{prefix}_timestamp`` / ``{prefix}_integer`` for a watermark (None values dropped later)."""
    if value is None:
        return {}
    return {f"{prefix}_timestamp": value.ts, f"{prefix}_integer": value.id}


def range_fields(after: Watermark | None, upto: Watermark) -> dict[str, Any]:
    """A :class:`DoneRange` as checkpoint JSON."""
    fields = {**watermark_fields("after", after), **watermark_fields("upto", upto)}
    return {k: v for k, v in fields.items() if v is not None}


def encode_value(value: Any) -> Any:
    """A primary-key value as JSON; non-JSON types are tagged so they round-trip exactly."""
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    return value


_DECODERS = {
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$time": time.fromisoformat,
    "$decimal": Decimal,
    "$uuid": uuid.UUID,
    "$bytes": base64.b64decode,
}


def decode_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, text),) = value.items()
        decoder = _DECODERS.get(tag)
        if decoder is not None:
            return decoder(text)
    return value
