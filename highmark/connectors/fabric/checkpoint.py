"""The Fabric job's ``checkpoint_data``: the reference's keys (shared/reference/003, "WEX Fabric
Job"), read for a listing that has no change feed.

A run lists the workspaces (phase ``workspaces``), then each one's items (phase ``items``); the
reference's "dataset", its unit of work, is here a workspace's item listing.

- ``workspace_id``: the workspace whose items are being listed; ``current_dataset`` its name.
- ``continuation_token`` / ``continuation_uri``: the next page of the listing in flight (a
  resumed run asks for it; one Fabric no longer takes restarts that listing).
- ``datasets_processed``: the workspaces whose items are loaded in this run.
- ``last_record_id``: the last object written; ``batch_number``, ``total_records_processed``.
- ``last_sync_timestamp``: when the last complete round began (the job's mark), and
  ``listing_started``: when this run's began, by Fabric's clock.
- ``workspaces_listed``: the workspaces of this run's complete listing (id: name), in order;
  ``workspace_stamp``: what the items of the workspace in flight are stamped with;
  ``inaccessible``: workspaces whose items could not be listed (why), kept untouched.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FabricCheckpoint(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    last_sync_timestamp: datetime | None = None
    datasets_processed: list[str] = Field(default_factory=list)
    current_dataset: str | None = None
    last_record_id: str | None = None
    batch_number: int = 0
    total_records_processed: int = 0
    workspace_id: str | None = None
    continuation_token: str | None = None
    continuation_uri: str | None = None
    phase: Literal["workspaces", "items"] = "workspaces"
    workspaces_listed: dict[str, str] = Field(default_factory=dict)
    workspace_stamp: int | None = None
    inaccessible: dict[str, str] = Field(default_factory=dict)
    listing_started: datetime | None = None
    recovery_mode: bool = False
    run_id: int | None = None
    last_checkpoint_at: datetime | None = None

    def to_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True)
