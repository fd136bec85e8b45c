"""Splitting a batch the target refused down to the rows at fault.

A destination writes a batch in one transaction, whichever way it writes it (a merge through a
stage, rows straight into an empty target, PostgreSQL COPY, a source range COPYed server to
server). When that transaction fails for a *data* reason (a constraint, a value too long or out
of range: :func:`highmark.destinations.refusal.is_data_error`), the batch is cut in halves and each
half is written again the same way, each in a fresh transaction; a half that fails is cut again,
until the rows at fault stand alone. Any other failure (a lost connection, a lock wait, a
deadlock) is raised as it is: it is the run's, retryable, and never bisected.

Bounds. With ``k`` bad rows among ``n``, each level of halving writes at most ``n`` rows and tries
at most ``2k`` pieces, over ``⌈log2 n⌉`` levels: at most ``n·(⌈log2 n⌉ + 1)`` rows and
``2k·⌈log2 n⌉ + 1`` transactions, whatever the rows. Memory: the batch's rows (in memory already,
or read once from a COPY range, which holds about ``batch_size`` rows) and a stack of index pairs
never deeper than ``⌈log2 n⌉ + 1``. Where the database says which row of a piece it refused
(PostgreSQL: the line of a COPY), the piece is cut there instead — the rows before, the row, the
rows after — which finds a bad row in three transactions rather than ``2·log2 n``. At most
``⌈log2 n⌉`` such cuts are made per batch (each may write the rest of the piece again), and a hint
that proves wrong (the row goes in alone) ends them, so the bounds above still hold within a
factor of two.

A target that refuses row after row and accepts none is not a bad-row problem: after
:data:`MAX_REFUSED_BEFORE_ANY_WRITE` lone rows refused and none written, the first error is
raised as a failure of the run.

Exactly once. The pieces partition the batch; a piece's transaction either commits every row of
it or rolls back every row, so each good row is committed by exactly one piece. A run stopped
midway replays the whole batch later, which the destinations make harmless (upsert by key, or a
first load cleared past its checkpoint).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from highmark.destinations.refusal import describe, is_data_error, row_hint
from highmark.models import Counts, RefusedRow
from highmark.sources.base import Batch, RangeRefused

log = logging.getLogger(__name__)

MAX_REFUSED_BEFORE_ANY_WRITE = 100


@dataclass(frozen=True)
class Written:
    """What a bisecting write did: the counts of the rows that went in, the rows refused."""

    counts: Counts
    refused: list[RefusedRow]


def write_bisecting(
    write: Callable[[Batch], Counts],
    batch: Batch,
    *,
    check: Callable[[], None] = lambda: None,
    give_up_after: int | None = MAX_REFUSED_BEFORE_ANY_WRITE,
) -> Written:
    """Write ``batch`` with ``write`` (one transaction per call); on a data error, bisect.

    ``check`` runs before each retried piece (a run stopped meanwhile stops here);
    ``give_up_after`` lone rows refused before any is written raise the first error (None: never).
    ``rows_read`` of the result counts every row of the batch, the refused included.

    A key range that a destination's fast path refuses (RangeRefused: a value it would alter or
    refuse there) is read as rows and written again the row path's way, bisected in its turn; the
    rows of a range whose values cannot be converted are refused, named."""
    try:
        return Written(write(batch), [])
    except RangeRefused as exc:
        if batch.copy is None:
            raise
        log.warning("a batch goes through Python: %s", exc)
        read = batch.copy.read()
        again = write_bisecting(
            write, Batch(rows=read.rows), check=check, give_up_after=give_up_after
        )
        counts = again.counts.with_read(again.counts.rows_read + len(read.refused))
        return Written(counts, [*read.refused, *again.refused])
    except Exception as exc:
        if not is_data_error(exc):
            raise
        first = exc
    rows, unreadable = batch_rows(batch)
    log.info("a batch of %s row(s) was refused (%s): bisecting", len(rows), describe(first).message)
    counts = Counts()
    refused: list[RefusedRow] = []
    # Pieces still to write, as [start, end) of ``rows``; popped in key order.
    pending: list[tuple[int, int]] = _halves(0, len(rows))
    # Each cut at a hint may write again every row after it: at most log2 n of them keep the
    # rows written within the halving bound.
    hints_left, suspects = max(1, len(rows).bit_length()), set[int]()
    while pending:
        check()
        start, end = pending.pop()
        if start == end:
            continue
        try:
            counts = counts + write(Batch(rows=rows[start:end]))
            if end - start == 1 and start in suspects:
                hints_left = 0  # the row the database named went in: its hints mislead
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if end - start > 1:
                hint = row_hint(exc) if hints_left > 0 else None
                if hint is not None and 0 <= hint < end - start:
                    suspect = start + hint
                    pending.extend([(suspect + 1, end), (suspect, suspect + 1), (start, suspect)])
                    suspects.add(suspect)
                    hints_left -= 1
                else:
                    pending.extend(_halves(start, end))
                continue
            refused.append(RefusedRow(rows[start], describe(exc)))
            if give_up_after is not None and not counts.rows_read and len(refused) >= give_up_after:
                raise first from None
    return Written(counts.with_read(len(rows) + len(unreadable)), [*unreadable, *refused])


def batch_rows(batch: Batch) -> tuple[list[dict[str, Any]], list[RefusedRow]]:
    """The rows of a batch; a key range is read from its source (about ``batch_size`` rows),
    with the rows whose values could not be converted (refused, named)."""
    if batch.rows or batch.copy is None:
        return batch.rows, []
    read = batch.copy.read()
    return read.rows, read.refused


def _halves(start: int, end: int) -> list[tuple[int, int]]:
    """``[start, end)`` in two, the first half last (it is popped first)."""
    middle = (start + end) // 2
    return [(middle, end), (start, middle)]
