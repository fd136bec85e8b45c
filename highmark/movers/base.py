"""The seam between a run and what it moves.

A run (highmark/run.py) owns everything every job shares: the claim, the lease and heartbeat,
cancel and timeout, the ``etl_job_runs`` row, error classification, alerts, and committing the
marks with the final status. A :class:`Mover` owns the rest: it reads the source, writes the
target, and tells the run, through the :class:`RunContext` it is handed, what it did (counts), where
it is (checkpoints) and what it learned (notes). It never touches the control store: when it
returns, the target holds everything it read, and the marks it returns are committed with the
run's ``success`` in one control-store transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from highmark.models import Backfill, Counts, MarkUpdate, RejectedRow, WatermarkRecord

if TYPE_CHECKING:
    from highmark.schema.change import SchemaChange

__all__ = ["MarkUpdate", "Mover", "RunContext"]


class RunContext(Protocol):
    """What a run offers its mover."""

    @property
    def run_id(self) -> int: ...

    @property
    def full_refresh(self) -> bool:
        """Asked to reload everything (``--full-refresh``, or ``load_type: full``)."""
        ...

    @property
    def backfill(self) -> Backfill | None:
        """A backfill: load the window ``(low, high]`` again, whatever the marks say. The run
        commits no marks for it, and its checkpoint is kept apart from the regular runs' one (a
        mover that cannot backfill raises)."""
        ...

    @property
    def previous_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint an unfinished earlier run left (None: start afresh). The mover
        validates it with its own model."""
        ...

    @property
    def marks(self) -> dict[str, WatermarkRecord]:
        """The job's committed marks, by ``source_table``."""
        ...

    @property
    def counts(self) -> Counts: ...

    @property
    def batch_number(self) -> int: ...

    def started(self, description: str) -> None:
        """Say what the run is about to do (the console shows it)."""
        ...

    def set_phase(self, phase: str) -> None:
        """Where the run is ("reading", "writing"…): a failure's details name it."""
        ...

    def set_record_hint(self, hint: dict[str, Any]) -> None:
        """The records being written (ids), for a failure's details."""
        ...

    def set_upper_bound(self, bound: str | None, reason: str | None) -> None: ...

    def add(self, counts: Counts, *, detail: str | None = None) -> None:
        """Count a committed batch (or page): ``batch_number`` moves on, the console shows it."""
        ...

    def replace_counts(self, counts: Counts) -> None:
        """Set the run's counts outright (a full load knows its totals only at the end)."""
        ...

    def save_checkpoint(self, data: dict[str, Any]) -> None:
        """Save the job's checkpoint (already validated by the mover's model) with the run's
        counts and a heartbeat; stops the run at once if someone asked it to stop."""
        ...

    def keep_checkpoint(self, data: dict[str, Any] | None) -> None:
        """What ``checkpoint_data`` holds once the run succeeds (by default nothing): the state
        the job's next run starts from that only the service can give again at great cost (a
        Graph delta link). It is committed with the marks and the run's success, in one
        control-store transaction; a run that fails keeps its last saved checkpoint instead."""
        ...

    def check(self) -> None:
        """Raise if the run must stop (cancelled, timed out, lease lost)."""
        ...

    def reject(self, rows: list[RejectedRow]) -> None:
        """Quarantine bad rows (``on_bad_rows: quarantine``): kept in ``etl_rejected_rows`` with
        the run, counted in its ``rows_rejected``; the run goes on past them."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait (a rate limit, a backoff), but stop at once if the run is cancelled."""
        ...

    def note(self, text: str) -> None:
        """A one-line note for the run's ``notes`` (what a user should know)."""
        ...

    def schema_changed(self, change: SchemaChange) -> None:
        """A change the mover applied to a target's columns (or found: a dropped column): kept
        in ``etl_schema_changes`` at once (the target has it, whatever becomes of the run),
        noted on the run, and raised as a ``schema_changed`` alert when the run ends."""
        ...


class Mover(Protocol):
    """Moves one job's data; made by the job's spec (``JobSpec.mover``)."""

    def move(self, ctx: RunContext) -> list[MarkUpdate]:
        """Do the work; return the marks to commit with the run's success."""
        ...

    def close(self) -> None:
        """Release connections (called whatever happened)."""
        ...
