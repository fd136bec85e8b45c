"""The Destination seam: what a run asks of any target."""

from __future__ import annotations

from typing import Any, Protocol

from highmark.models import Counts
from highmark.sqlschema import TableSchema


class Destination(Protocol):
    """A target written idempotently: merging a batch twice changes nothing the second time."""

    def prepare(self, source: TableSchema) -> None:
        """Create the target if missing; refuse, before writing, a target that conflicts."""
        ...

    def merge_batch(self, rows: list[dict[str, Any]]) -> Counts:
        """Upsert ``rows`` by primary key in one committed transaction; report what changed."""
        ...

    def stage_begin(self, resume_after: tuple[Any, ...] | None) -> bool:
        """Start (or, after ``resume_after``, continue: then True) staging a full load."""
        ...

    def stage_batch(self, rows: list[dict[str, Any]]) -> None:
        """Add rows to the full load's staging table, committed."""
        ...

    def stage_finish(self) -> Counts:
        """Replace the target's content with the staged rows in one transaction."""
        ...

    def close(self) -> None: ...
