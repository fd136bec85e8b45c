"""The Entra ID job's ``checkpoint_data``: the reference's keys (shared/reference/003, "WEX AD
Job"), with what delta rounds need that the reference leaves out.

- ``delta_token``: per round (``users``, ``groups``), the whole ``@odata.deltaLink`` of its last
  complete round, followed verbatim by the next one. It is set only when the round's last page
  is in the target, and it outlives the run: a successful run keeps this checkpoint (cleared of
  its recovery state) instead of clearing it. ``select``: the ``$select`` each link was made
  with (a job that tracks other properties starts a full round).
- ``next_link``: per round in flight, the ``@odata.nextLink`` after its last committed page (a
  resumed run asks for that page, and no committed page again).
- ``sync_type``: ``full`` while this run does (or did) a full round — the first, a resync or a
  ``--full-refresh`` — else ``incremental``; ``full_rounds``: the rounds in flight that are full,
  with the stamp their rows get (the sweep at their end removes the rest).
- ``last_sync_timestamp``: when the last complete round began, by Graph's clock;
  ``round_started``: when each round in flight (or done in this run) began.
- ``users_processed``, ``groups_processed``: objects received in this run; ``last_user_id``,
  ``last_group_id``: the last of the last committed page.
- ``rounds_processed``, ``current_round``, ``batch_number``, ``recovery_mode``, ``run_id``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MsGraphCheckpoint(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    last_sync_timestamp: datetime | None = None
    users_processed: int = 0
    groups_processed: int = 0
    last_user_id: str | None = None
    last_group_id: str | None = None
    sync_type: Literal["full", "incremental"] = "incremental"
    delta_token: dict[str, str] = Field(default_factory=dict)
    select: dict[str, str] = Field(default_factory=dict)
    next_link: dict[str, str] = Field(default_factory=dict)
    full_rounds: dict[str, int] = Field(default_factory=dict)
    round_started: dict[str, datetime] = Field(default_factory=dict)
    rounds_processed: list[str] = Field(default_factory=list)
    current_round: str | None = None
    batch_number: int = 0
    recovery_mode: bool = False
    full_refresh: bool = False
    run_id: int | None = None
    last_checkpoint_at: datetime | None = None

    def to_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True)

    def kept(self) -> MsGraphCheckpoint:
        """What outlives a successful run: the delta links and when the rounds were made."""
        return MsGraphCheckpoint(
            last_sync_timestamp=self.last_sync_timestamp,
            users_processed=self.users_processed,
            groups_processed=self.groups_processed,
            last_user_id=self.last_user_id,
            last_group_id=self.last_group_id,
            sync_type=self.sync_type,
            delta_token=self.delta_token,
            select=self.select,
            run_id=self.run_id,
            last_checkpoint_at=self.last_checkpoint_at,
        )
