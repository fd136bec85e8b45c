"""The Source seam: what a run asks of any source of rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from highmark.models import Watermark
from highmark.sqlschema import TableSchema


@dataclass(frozen=True)
class Batch:
    """Rows in key order, as canonical Python values keyed by source column name.

    ``last_key`` is the watermark key of the last row (incremental reads); ``last_pk`` is its
    primary key (full reads, which go in primary-key order). ``keys_within`` counts the rows whose
    watermark key is at or below the window's upper bound (full refreshes read past it).
    """

    rows: list[dict[str, Any]]
    last_key: Watermark | None = None
    last_pk: tuple[Any, ...] | None = None
    max_key_within: Watermark | None = None


@dataclass(frozen=True)
class Bound:
    """A run's upper bound: inclusive ``high`` and the reason it is there."""

    high: datetime | int | None
    reason: str
    blind: bool = False
    hold: bool = False
    now: datetime | None = None  # the source database's clock when the bound was taken


@dataclass(frozen=True)
class Anomalies:
    """Rows that no window will ever read as they are: NULL watermarks, and future timestamps."""

    null_rows: int = 0
    future_rows: int = 0
    future_max: datetime | None = None


class Source(Protocol):
    """A table-like source read in key order."""

    def describe(self) -> TableSchema:
        """The source's columns and keys (raises SourceError when it does not exist)."""
        ...

    def upper_bound(self, low: Watermark | None) -> Bound:
        """The safe upper bound for a new run's window."""
        ...

    def read_window(
        self,
        low: Watermark | None,
        high: datetime | int | None,
        *,
        inclusive: bool,
        batch_size: int,
    ) -> Iterator[Batch]:
        """Rows with keys in ``(low, high]`` (``[low, high]`` when ``inclusive``), in key order."""
        ...

    def read_all(
        self, after_pk: tuple[Any, ...] | None, high: datetime | int | None, *, batch_size: int
    ) -> Iterator[Batch]:
        """Every row, in primary-key order, after ``after_pk``."""
        ...

    def close(self) -> None: ...
