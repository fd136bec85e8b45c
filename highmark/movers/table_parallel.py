"""First loads in key ranges at once (``parallelism``), for the SQL-table mover.

Each range is loaded on a writer of its own (highmark/parallel.py plans the ranges and keeps
the ledger of those done); after each commit the run checkpoints the prefix of the window that
is done and the ranges done past it, so a killed parallel load resumes, serially or in parallel,
by clearing what lies past that prefix and loading it again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from highmark import parallel
from highmark.checkpoint import RunCheckpoint, watermark_fields
from highmark.destinations.bisect import write_bisecting
from highmark.destinations.sql import SqlDestination
from highmark.models import Counts, RefusedRow, Watermark
from highmark.sources.base import Batch

if TYPE_CHECKING:
    from highmark.movers.table import TableMover

log = logging.getLogger(__name__)


def parallel_writers(mover: TableMover, direct: bool, previous: RunCheckpoint | None) -> int:
    """How many ranges load at once, or 0 for a serial load (highmark/parallel.py)."""
    wanted = mover.job.parallelism
    resuming_parallel = previous is not None and previous.parallel
    if not resuming_parallel and (wanted == 1 or not direct or previous is not None):
        return 0
    reason = parallel.unsupported(mover.job, mover.bulk and mover.dst.loads_ranges_in_parallel)
    if reason is not None:
        # A parallel checkpoint resumes serially just as well: everything past its
        # prefix is cleared and loaded again.
        if wanted > 1:
            mover.ctx.note(f"parallelism {wanted} not used: {reason}")
        return 0
    return wanted


def load_in_parallel(
    mover: TableMover,
    low: Watermark | None,
    high: Any,
    inclusive: bool,
    previous: RunCheckpoint | None,
    writers: int,
) -> None:
    done = previous.done() if previous is not None else []
    if previous is not None:
        removed = sum(
            mover.dst.delete_range(after, upto, inclusive=inclusive and i == 0)
            for i, (after, upto) in enumerate(parallel.gaps(low, done))
        )
        log.info(
            "job %s: removed %s row(s) written after the checkpoint; %s range(s) were done",
            mover.job.job_id, removed, len(done),
        )  # fmt: skip
    soft = mover.job.soft_delete
    ledger = parallel.RangeLedger(low)

    refused: list[RefusedRow] = []

    def write(writer: SqlDestination, batch: Batch) -> Counts:
        # On a writer's thread: the refused rows are handed on by committed(), on this one.
        written = write_bisecting(writer.write_direct, batch)
        refused.extend(written.refused)
        return written.counts

    def committed(counts: Counts) -> None:
        mover.ctx.add(counts)
        found = refused[:]
        del refused[: len(found)]
        mover.bad_rows().handle(found)
        mover.position = ledger.position
        mover.save_checkpoint(
            **watermark_fields("last_value", ledger.position),
            inclusive=inclusive and ledger.position == low,
            done_ranges=ledger.done_ranges(),
        )

    extra = [mover.dst.clone() for _ in range(writers - 1)]
    mover.ctx.set_phase("reading")
    try:
        parallel.load_ranges(
            parallel.plan_ranges(
                mover.src, low, high, inclusive=inclusive,
                batch_size=mover.job.batch_size,
                skip_deleted=soft is not None and soft.mode == "delete",
                done=done,
            ),
            ledger,
            [mover.dst, *extra],
            before_each=mover.ctx.check,
            committed=committed,
            write=write,
        )  # fmt: skip
    finally:
        for writer in extra:
            writer.close()
    mover.position = ledger.position
