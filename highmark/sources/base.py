"""The Source seam: what a run asks of any source of rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from highmark.models import RefusedRow, Watermark
from highmark.sqlschema import TableSchema


class CopyRange(Protocol):
    """A range of source rows that a bulk destination pulls with COPY, never as Python objects."""

    @property
    def source_columns(self) -> list[str]: ...

    def stream(
        self, select_list: list[str], *, binary: bool, options: str = ""
    ) -> AbstractContextManager[Iterator[bytes]]:
        """COPY the range out, each column as the given SQL expression, in chunks of bytes (in
        binary, or with the given COPY options)."""
        ...

    def read(self) -> Batch:
        """The range's rows as canonical Python values, in primary-key order, and the rows whose
        values could not be converted (``refused``): the row path, for a range a fast path
        refused or the target refused (then bisected)."""
        ...


class RangeRefused(Exception):
    """A destination's fast path could not take a range as it is (a value it would refuse or
    alter there): nothing of the batch was written, and it is to be written again as rows, where
    the row path's checks apply and a bad row is named."""


@dataclass(frozen=True)
class Batch:
    """Rows in key order, as canonical Python values keyed by source column name — or, on the
    bulk path, a ``copy`` range the destination pulls itself (``rows`` is then empty).

    ``last_key`` is the watermark key of the last row (incremental reads); ``last_pk`` is its
    primary key (full reads, which go in primary-key order). ``max_key_within`` is the greatest
    watermark key at or below the window's upper bound (full refreshes read past it).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    last_key: Watermark | None = None
    last_pk: tuple[Any, ...] | None = None
    max_key_within: Watermark | None = None
    copy: CopyRange | None = None
    # Rows read but not convertible (bad rows, highmark/sources/conversion.py), left out of rows.
    refused: list[RefusedRow] = field(default_factory=list)


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
