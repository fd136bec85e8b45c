"""One schema change, as a run reports it and ``etl_schema_changes`` keeps it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ChangeKind(enum.StrEnum):
    ADD = "add"  # a source column new to the target: added (nullable)
    DROP = "drop"  # a target column the source no longer has: kept, NULL in new rows
    WIDEN = "widen"  # a target column made wider to take the source's values


@dataclass(frozen=True)
class SchemaChange:
    """A change applied to a target table (or, for a drop, seen and left in place)."""

    source_table: str
    target_table: str
    column: str
    kind: ChangeKind
    old_type: str | None = None
    new_type: str | None = None

    def describe(self) -> str:
        """The run's note about it (one line)."""
        where = f"{self.target_table}.{self.column}"
        if self.kind is ChangeKind.ADD:
            return (
                f"schema change: column {where} added ({self.new_type}) from source "
                f"{self.source_table}; rows loaded before get it when they next change "
                "(run --full-refresh or a backfill to fill it everywhere)"
            )
        if self.kind is ChangeKind.DROP:
            return (
                f"schema change: column {self.column} is no longer read from source "
                f"{self.source_table}; {where} is kept and is NULL in new rows"
            )
        return f"schema change: column {where} widened from {self.old_type} to {self.new_type}"
