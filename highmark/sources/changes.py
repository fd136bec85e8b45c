"""What a change-data-capture source hands its mover: positions in a log, and sets of changes.

A :class:`ChangeSet` is the net effect of whole source transactions (in commit order) on the
target's rows, by primary key: the last version of each row that was inserted or updated, or its
deletion, and whether the table was truncated first. Applying the net effect is the same as
applying each change in order, because every change sets a whole row (or removes it): the last
one wins. It is also what makes a replay harmless: applying a set again, or applying changes the
target already holds, leaves the target as applying them once did.

A change whose values the source cannot convert (a date before the year 1) is a bad row: its
key's net effect is then that refusal, which a later change of the key replaces.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from highmark.models import RefusedRow
from highmark.sqlschema import TableSchema

Key = tuple[Any, ...]


@dataclass(frozen=True)
class LogPoint:
    """A position in a source's log: as an integer (ordered, kept in the control tables), as
    the source writes it, and the commit time of the transaction that ends there (if known)."""

    position: int
    text: str
    at: datetime | None = None


class Op(enum.Enum):
    UPSERT = "upsert"
    DELETE = "delete"


@dataclass
class RowChange:
    op: Op
    row: dict[str, Any] | None  # UPSERT: the row by source column name (canonical values)
    at: datetime  # the commit time of the transaction that made it
    missing: frozenset[str] = frozenset()  # columns the log did not carry (unchanged TOAST)


@dataclass
class ChangeSet:
    """The net effect of source transactions on target rows (see the module docstring)."""

    rows: dict[Key, RowChange] = field(default_factory=dict)
    truncated_at: datetime | None = None
    # The log position just past the last whole transaction in the set (None: a part of one
    # transaction too large to hold at once; the position then stays where it was).
    end: LogPoint | None = None
    changes: int = 0  # change events read (rows_read)
    transactions: int = 0
    new_columns: set[str] = field(default_factory=set)
    # Keys whose last change the source could not convert: bad rows, not applied.
    refused: dict[Key, RefusedRow] = field(default_factory=dict)

    def upsert(self, key: Key, row: dict[str, Any], at: datetime, missing: frozenset[str]) -> None:
        self.changes += 1
        self.refused.pop(key, None)
        if missing:
            earlier = self.rows.get(key)
            if earlier is not None and earlier.op is Op.UPSERT and earlier.row is not None:
                for name in missing - earlier.missing:
                    row[name] = earlier.row.get(name)
                missing = missing & earlier.missing
        self.rows[key] = RowChange(Op.UPSERT, row, at, missing)

    def delete(self, key: Key, at: datetime) -> None:
        self.changes += 1
        self.refused.pop(key, None)
        self.rows[key] = RowChange(Op.DELETE, None, at)

    def refuse(self, key: Key, refused: RefusedRow) -> None:
        """A change of ``key`` the source could not convert: the key's net effect is a bad row
        (an earlier change of it in the set is not applied either: the row's last version is
        the refused one)."""
        self.changes += 1
        self.rows.pop(key, None)
        self.refused[key] = refused

    def truncate(self, at: datetime) -> None:
        self.changes += 1
        self.rows.clear()
        self.refused.clear()
        self.truncated_at = at

    def __len__(self) -> int:
        return len(self.rows) + len(self.refused)

    @property
    def empty(self) -> bool:
        return not self.rows and self.truncated_at is None


class ChangeSource(Protocol):
    """A table's change log (PostgreSQL logical decoding, MySQL/MariaDB binary log)."""

    def describe(self) -> TableSchema:
        """The source table as it is now (re-read after a column was added)."""
        ...

    def start(self) -> LogPoint:
        """Set up reading the log (slot, publication…) from a point no later than any snapshot
        taken afterwards: a fresh start, followed by a snapshot."""
        ...

    def resume(self, position: int) -> None:
        """Check the log still holds every change after ``position`` (raise if not)."""
        ...

    def point(self, position: int, at: datetime | None) -> LogPoint:
        """``position`` (an integer) as a :class:`LogPoint`."""
        ...

    def current(self) -> LogPoint:
        """The log's end now: a run applies the changes up to it."""
        ...

    def changes(self, after: LogPoint, upto: LogPoint, batch_size: int) -> Iterator[ChangeSet]:
        """Change sets in commit order, each ending at a transaction boundary, until ``upto``.
        Between two sets the caller applies the first and calls :meth:`confirm`."""
        ...

    def confirm(self, position: int) -> None:
        """The target committed everything up to ``position``: the log may let it go."""
        ...

    def lag_bytes(self, position: int | None) -> int | None:
        """Bytes of log the source keeps for this job (None: nothing held yet)."""
        ...

    def drop(self) -> list[str]:
        """Remove what :meth:`start` set up; say what was removed."""
        ...

    def close(self) -> None: ...
