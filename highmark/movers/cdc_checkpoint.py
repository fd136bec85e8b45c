"""The checkpoint of a CDC run in ``etl_jobs.checkpoint_data``.

The reference's keys keep their meaning: ``last_value_integer`` is the log position applied so far
(an integer: see highmark/sources/changes.py), ``last_value_timestamp`` the commit time of the last
transaction applied, ``batch_number``, ``total_rows_processed``, ``recovery_mode``. ``position`` is
the same position as the source writes it (``16/B374D848``, ``mysql-bin.000012:4711``). While the
first snapshot is loaded (``phase: snapshot``) the position is where the changes will be read from
afterwards, and ``last_pk`` the last primary key staged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from highmark.checkpoint import decode_value
from highmark.errors import CheckpointError


class CdcCheckpoint(BaseModel):
    """Progress of a CDC run, saved after every committed batch."""

    model_config = ConfigDict(extra="allow", frozen=True)

    run_id: int
    mode: Literal["cdc"] = "cdc"
    phase: Literal["snapshot", "stream"]
    batch_number: int = 0
    total_rows_processed: int = 0
    recovery_mode: bool = False
    last_value_integer: int
    last_value_timestamp: datetime | None = None
    position: str | None = None
    log_end: str | None = None  # the log's end when the run started: where it stops
    last_pk: list[Any] | None = None
    last_checkpoint_at: datetime | None = None

    @classmethod
    def parse(cls, job_id: str, data: dict[str, Any]) -> CdcCheckpoint:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(p) for p in error["loc"]) or "(whole)"
            raise CheckpointError(
                f"the checkpoint of job {job_id} is invalid: {key}: {error['msg']} "
                f"(inspect it with `highmark checkpoint show {job_id}`, or re-snapshot with "
                f"`highmark run {job_id} --full-refresh`)",
                retryable=False,
            ) from None

    def primary_key(self) -> tuple[Any, ...] | None:
        return None if self.last_pk is None else tuple(decode_value(v) for v in self.last_pk)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
