"""Parallel first loads: the window cut into key ranges that several writers load at once.

Where it applies (``parallelism: N`` on the job): the first load of an incremental job into an
empty target (the direct mode of :mod:`highmark.run`) on the bulk path, PostgreSQL to PostgreSQL.
There each range is one ``COPY … TO STDOUT`` piped into one ``COPY … FROM STDIN`` and the two
servers do the work, so threads suffice: the bytes pass through Python without becoming rows.
Every other load is serial (the run says so in its notes).

Each range is one target transaction. The checkpoint keeps, as a serial load does, the prefix of
the window that is wholly loaded (``last_value_*``), and the ranges loaded past it
(``done_ranges``). A killed load resumes by clearing the target in the gaps between those (a range
may have committed just before the kill, its checkpoint unsaved) and loading only the gaps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from highmark import failpoints
from highmark.checkpoint import range_fields
from highmark.config import TableJobSpec
from highmark.models import Counts, Watermark
from highmark.sources import postgres_copy
from highmark.sources.base import Batch

if TYPE_CHECKING:
    from highmark.destinations.sql import SqlDestination
    from highmark.sources.sql import SqlSource

log = logging.getLogger(__name__)

KeyRange = tuple[Watermark | None, Watermark]


def unsupported(job: TableJobSpec, bulk: bool) -> str | None:
    """Why this job's first load cannot go in parallel, or None when it can."""
    if not bulk:
        return (
            "parallel loads need key ranges that the target takes at once (PostgreSQL to "
            "PostgreSQL or MariaDB); this one is serial"
        )
    if job.watermark is not None and job.watermark.on_null == "include":
        return "watermark.on_null: include reads the NULL-watermark rows serially"
    return None


@dataclass
class _Range:
    after: Watermark | None
    upto: Watermark
    done: bool = False


class RangeLedger:
    """The ranges of a parallel load in key order, and how far the wholly loaded prefix reaches."""

    def __init__(self, position: Watermark | None) -> None:
        self.position = position
        self._past_prefix: list[_Range] = []  # in key order

    def add(self, after: Watermark | None, upto: Watermark, *, done: bool = False) -> _Range:
        entry = _Range(after, upto, done)
        self._past_prefix.append(entry)
        self._advance()
        return entry

    def finish(self, entry: _Range) -> None:
        entry.done = True
        self._advance()

    def _advance(self) -> None:
        while self._past_prefix and self._past_prefix[0].done:
            self.position = self._past_prefix.pop(0).upto

    def done_ranges(self) -> list[dict[str, Any]]:
        """The ranges loaded past the prefix, as checkpoint JSON."""
        return [range_fields(r.after, r.upto) for r in self._past_prefix if r.done]


def gaps(position: Watermark | None, done: list[KeyRange]) -> list[tuple[Watermark | None, ...]]:
    """The key ranges ``(after, upto]`` not loaded: from the prefix to the first done range,
    between done ranges, and past the last (``upto`` None: to the end of the window)."""
    found: list[tuple[Watermark | None, ...]] = []
    start = position
    for after, upto in done:
        if after is not None:
            found.append((start, after))
        start = upto
    found.append((start, None))
    return found


def plan_ranges(
    source: SqlSource,
    low: Watermark | None,
    high: datetime | int | None,
    *,
    inclusive: bool,
    batch_size: int,
    skip_deleted: bool,
    done: list[KeyRange],
) -> Iterator[tuple[Watermark | None, Watermark, Batch | None]]:
    """``(after, upto, batch)`` for every range of the window in key order: the ranges still to
    load (batches of about ``batch_size`` rows, probed as they are needed) and, with no batch,
    the ``done`` ones."""
    start, start_inclusive = low, inclusive
    for after, upto in done:
        if after is not None:
            yield from _gap(source, start, after, high, start_inclusive, batch_size, skip_deleted)
        yield after, upto, None
        start, start_inclusive = upto, False
    yield from _gap(source, start, None, high, start_inclusive, batch_size, skip_deleted)


def _gap(
    source: SqlSource,
    start: Watermark | None,
    upto: Watermark | None,
    high: datetime | int | None,
    inclusive: bool,
    batch_size: int,
    skip_deleted: bool,
) -> Iterator[tuple[Watermark | None, Watermark, Batch]]:
    batches = postgres_copy.window_ranges(
        source, start, high, inclusive=inclusive, batch_size=batch_size,
        skip_deleted=skip_deleted, upto=upto,
    )  # fmt: skip
    for batch in batches:
        assert batch.last_key is not None
        yield start, batch.last_key, batch
        start = batch.last_key


def load_ranges(
    ranges: Iterable[tuple[Watermark | None, Watermark, Batch | None]],
    ledger: RangeLedger,
    writers: list[SqlDestination],
    *,
    before_each: Callable[[], None],
    committed: Callable[[Counts], None],
    write: Callable[[SqlDestination, Batch], Counts],
) -> None:
    """Load every range not yet done, one per writer at a time. ``before_each`` runs before a
    range is started (cancellation, lease), ``committed`` after one committed (counts,
    checkpoint); both on this thread, which alone touches the control store. ``write`` writes a
    range on a writer's thread (bisecting what the target refuses). When a range fails
    or the run is stopped, the ranges under way finish (or fail) and are recorded first."""
    free = list(writers)
    running: dict[Future[Counts], tuple[_Range, SqlDestination]] = {}

    def collect(finished: Iterable[Future[Counts]]) -> None:
        for future in finished:
            entry, writer = running.pop(future)
            free.append(writer)
            counts = future.result()  # a failed range raises here
            ledger.finish(entry)
            committed(counts)

    with ThreadPoolExecutor(len(writers), thread_name_prefix="highmark-range") as pool:
        try:
            for after, upto, batch in ranges:
                if batch is None:
                    ledger.add(after, upto, done=True)
                    continue
                while not free:
                    collect(wait(running, return_when=FIRST_COMPLETED).done)
                before_each()
                entry = ledger.add(after, upto)
                writer = free.pop()
                running[pool.submit(_write, writer, batch, write)] = (entry, writer)
            while running:
                collect(wait(running, return_when=FIRST_COMPLETED).done)
        except BaseException:
            # Each range commits or rolls back on its own: record the ones that commit.
            for future in list(running):
                try:
                    collect([future])
                except Exception:
                    log.debug("a parallel range failed as the load stopped", exc_info=True)
            raise


def _write(
    writer: SqlDestination,
    batch: Batch,
    write: Callable[[SqlDestination, Batch], Counts],
) -> Counts:
    counts = write(writer, batch)
    failpoints.reach("after_target_commit")
    return counts
