"""API jobs whose mark is the time of a complete round, not a record's timestamp.

Microsoft Graph hands out change sets (delta rounds) and Fabric only whole listings (snapshots):
neither has an ``updatedAt`` to keep a mark on. Their jobs keep one ``etl_watermarks`` row per
entity (``users``, ``groups``, ``workspaces``), ``watermark_type`` timestamp, holding when the last
complete round began by the service's clock, and they learn of deletions, which reach the target
as deletes, or as ``deleted_at`` marks under ``soft_delete: {mode: mark}``.

Both learn of deletions that no answer reports by listing everything: a full round (or listing)
stamps each row it reads in the column ``synced_round``, and its last page removes the rows of its
scope stamped otherwise (mark-and-sweep). :func:`round_stamp` makes the stamp unique per run and
per restart of the round in that run, so that a row read before a restart is not taken for one
read after it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from highmark.config.common import KeyedError, Strict
from highmark.connectors.spec import ApiJobSpec

STAMP_COLUMN = "synced_round"
# Restarts of one round that one run may make (each gets its own stamp).
RESTARTS_PER_RUN = 1000


def round_stamp(run_id: int, restart: int = 0) -> int:
    """What the rows a round (a listing) reads are stamped with: ``run_id * 1000 + restart``."""
    if not 0 <= restart < RESTARTS_PER_RUN:
        raise ValueError(f"restart {restart} is out of range")
    return run_id * RESTARTS_PER_RUN + restart


class RecordSoftDelete(Strict):
    """``soft_delete: {mode: mark}``: keep removed objects with ``deleted_at`` set."""

    mode: Literal["mark", "delete"] = "mark"


class RoundJobSpec(ApiJobSpec):
    """An API job loaded in rounds; ``soft_delete`` says what a removed object becomes."""

    mark_column: ClassVar[str] = "last_sync_timestamp"

    soft_delete: RecordSoftDelete | None = None

    @model_validator(mode="after")
    def _no_lag(self) -> RoundJobSpec:
        if "lag" in self.model_fields_set:
            raise KeyedError(
                ("lag",),
                f"does not apply to {self.kind} jobs (their rounds are change sets or whole "
                "listings, not timestamps: nothing is read behind a mark)",
            )
        return self

    @property
    def delete_mode(self) -> Literal["mark", "delete"]:
        return self.soft_delete.mode if self.soft_delete is not None else "delete"
