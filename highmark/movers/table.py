"""The SQL-table mover: a window of source rows (or the whole table) into a target table.

Incremental runs read ``(low, high]``: ``low`` is the committed mark or the resumed checkpoint's
keyset position, ``high`` the safe upper bound taken from the source before the read (pinned in the
checkpoint so a resumed run reads the same window). A backfill reads the window it is given,
merging into the target, and returns no mark. Full loads stage every row beside the target
and replace its content in one transaction. First loads into an empty target write straight into
it, in key ranges at once when ``parallelism`` allows (table_parallel.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from highmark import clock, failpoints
from highmark.bad_rows import BadRows
from highmark.checkpoint import RunCheckpoint, encode_value, watermark_fields
from highmark.config import ProjectConfig, TableJobSpec
from highmark.destinations.bisect import write_bisecting
from highmark.destinations.sql import SqlDestination
from highmark.errors import SourceError
from highmark.models import (
    Backfill,
    Counts,
    MarkUpdate,
    Watermark,
    WatermarkType,
    later_of,
)
from highmark.movers.base import RunContext
from highmark.movers.table_parallel import load_in_parallel, parallel_writers
from highmark.sources import postgres_copy
from highmark.sources.base import Batch
from highmark.sources.sql import SqlSource

log = logging.getLogger(__name__)


class TableMover:
    """Moves one SQL table job's rows; see the module docstring."""

    def __init__(self, config: ProjectConfig, job: TableJobSpec) -> None:
        self.config = config
        self.job = job
        self.source: SqlSource | None = None
        self.destination: SqlDestination | None = None
        self.position: Watermark | None = None
        self.max_key: Watermark | None = None
        self.checkpoint_base: dict[str, Any] = {}
        self.bulk = False

    def move(self, ctx: RunContext) -> list[MarkUpdate]:
        self.ctx = ctx
        job = self.job
        self.src = self.source = SqlSource(
            self.config.resolve(job.source.connection), job.source, job
        )
        self.dst = self.destination = SqlDestination(
            self.config.resolve(job.target.connection), job.target, job
        )
        ctx.set_phase("describing source")
        self.src.describe()
        committed = self._committed()
        previous = self._previous_checkpoint()
        if ctx.backfill is not None:
            self._backfill(ctx.backfill, previous)
            return []
        if previous is not None and previous.mode == "full":
            self._prepare_target()
            self._full(previous)
        elif ctx.full_refresh:
            self._prepare_target()
            self._full(None)
        else:
            self._incremental(committed, previous)
        if job.watermark is None or self.position is None:
            return []
        return [MarkUpdate(job.source.table, job.watermark.column, self.position)]

    def close(self) -> None:
        for part in (self.source, self.destination):
            if part is not None:
                part.close()

    def _committed(self) -> Watermark | None:
        record = self.ctx.marks.get(self.job.source.table)
        return record.watermark() if record is not None else None

    def _prepare_target(self) -> None:
        """Create or check the target (a conflicting target fails here, before any write)."""
        self.ctx.set_phase("preparing target")
        schema = self.src.describe()
        source_zone = self.config.database(self.job.source.connection).timezone
        for change in self.dst.prepare(schema, source_zone):
            self.ctx.schema_changed(change)
        # Masked values are computed in Python (highmark/schema/selection.py): no fast path.
        self.bulk = self.dst.takes_ranges_from(self.src) and not self.job.mask_columns

    def _previous_checkpoint(self) -> RunCheckpoint | None:
        data = self.ctx.previous_checkpoint
        if not data:
            return None
        checkpoint = RunCheckpoint.parse(self.job.job_id, data)
        if checkpoint.run_id == self.ctx.run_id:
            return None
        spec_type = self.job.watermark.type if self.job.watermark else None
        if checkpoint.mode == "incremental" and (
            self.ctx.full_refresh or checkpoint.watermark_type is not spec_type
        ):
            log.warning(
                "job %s: discarding the checkpoint of run %s", self.job.job_id, checkpoint.run_id
            )
            return None
        log.info(
            "job %s: resuming run %s's checkpoint at batch %s",
            self.job.job_id, checkpoint.run_id, checkpoint.batch_number,
        )  # fmt: skip
        return checkpoint

    # ------------------------------------------------------------------ incremental

    def _incremental(self, committed: Watermark | None, previous: RunCheckpoint | None) -> None:
        spec = self.job.watermark
        assert spec is not None
        ctx = self.ctx
        recovering = previous is not None
        inclusive = False
        if previous is not None:
            low = previous.position() or committed
            inclusive = previous.inclusive
            high = previous.window_high
            reason = previous.window_high_reason or "pinned by the resumed checkpoint"
        else:
            ctx.set_phase("computing the upper bound")
            bound = self.src.upper_bound(committed)
            high, reason = bound.high, bound.reason
            if bound.blind:
                if not spec.lag and spec.blind_bound == "refuse":
                    raise SourceError(
                        f"job {self.job.job_id}: the source role cannot see other sessions' "
                        "transactions, so the upper bound is blind to late commits; grant it "
                        "pg_read_all_stats (PostgreSQL) or PROCESS (MySQL/MariaDB), or set "
                        "watermark.lag (or watermark.blind_bound: allow)",
                        retryable=False,
                    )
                ctx.note(f"upper bound is blind to open transactions ({reason})")
            if bound.hold:
                high = _low_value(committed)
                ctx.note(f"watermark held back: {reason}")
            self._check_anomalies(bound.now if spec.type is WatermarkType.TIMESTAMP else None)
            low = committed
            if low is not None and spec.lag and low.ts is not None:
                low = Watermark(WatermarkType.TIMESTAMP, ts=low.ts - spec.lag)
                inclusive = True
        # The read position (what a resume continues after) is not the watermark: with `lag` the
        # run reads below the committed mark, and a resume must re-read from where it stopped.
        # The mark is moved at the end to the last key read; the store keeps it from going back.
        self.position = low
        self.checkpoint_base = {
            "mode": "incremental",
            "watermark_type": spec.type,
            "window_high": high,
            "window_high_reason": reason,
            "recovery_mode": recovering,
        }
        ctx.set_upper_bound(_bound_text(high), reason)
        ctx.started(self._describe(low, high, reason, recovering))
        if _window_is_empty(low, high) or (
            previous is None and not self.src.has_rows(low, high, inclusive=inclusive)
        ):
            return  # nothing to load: the target is not even opened (start-up time)
        self._prepare_target()
        # A first load into an empty target writes straight into it (no stage, no merge); a
        # resumed one first removes what its interrupted run wrote after the last checkpoint.
        direct = previous.direct if previous is not None else (
            committed is None and self.dst.is_empty()
        )  # fmt: skip
        self.checkpoint_base["direct"] = direct
        writers = parallel_writers(self, direct, previous)
        self.checkpoint_base["parallel"] = writers > 0
        if previous is None and direct:
            # A first load killed before its first batch's checkpoint (in parallel, ranges may
            # commit before the first is checkpointed) resumes as a first load (clear what it
            # wrote, load again), not as a merge into a half-filled target.
            self.save_checkpoint(inclusive=inclusive)
        if writers:
            load_in_parallel(self, low, high, inclusive, previous, writers)
            return
        if previous is not None and direct:
            removed = self.dst.delete_after(low, inclusive=inclusive)
            log.info(
                "job %s: removed %s row(s) written after the checkpoint", self.job.job_id, removed
            )
        ctx.set_phase("reading")
        # _closing(): a run stopped mid-read closes the source's cursor now, while its
        # connection is open, not whenever the garbage collector gets to the generator.
        with _closing(self._window_batches(low, high, inclusive, direct)) as batches:
            self._load_window(batches, direct, inclusive)

    def _backfill(self, window: Backfill, previous: RunCheckpoint | None) -> None:
        """Load ``(window.low, window.high]`` again, upserting; resume an interrupted backfill
        of the same window, replace one of another window."""
        spec = self.job.watermark
        ctx = self.ctx
        if spec is None:
            raise SourceError(
                f"job {self.job.job_id} has no watermark: it cannot be backfilled", retryable=False
            )
        wanted = window.to_json()
        if previous is not None and (previous.model_extra or {}).get("backfill_window") != wanted:
            ctx.note(f"the unfinished backfill of run {previous.run_id} was replaced by this one")
            previous = None
        low = previous.position() if previous is not None else window.low
        if previous is None and spec.tiebreaker and low is not None and low.id is None:
            # (X, …] excludes the rows at X: after every tiebreaker value at X.
            low = Watermark(WatermarkType.TIMESTAMP, ts=low.ts, id=_AFTER_EVERY_ID)
        inclusive = previous.inclusive if previous is not None else False
        high = _low_value(window.high)
        self.position = low
        self.checkpoint_base = {
            "mode": "incremental",
            "watermark_type": spec.type,
            "window_high": high,
            "window_high_reason": "backfill",
            "recovery_mode": previous is not None,
            "direct": False,
            "backfill_window": wanted,
        }
        ctx.set_upper_bound(_bound_text(high), "backfill")
        source = self.config.resolve(self.job.source.connection).display_url
        ctx.started(
            f"{'resuming ' if previous else ''}backfill of {self.job.source.table} ({source}) "
            f"({wanted['from']}, {wanted['to']}]"
        )
        if _window_is_empty(low, high) or (
            previous is None and not self.src.has_rows(low, high, inclusive=inclusive)
        ):
            return
        self._prepare_target()
        ctx.set_phase("reading")
        with _closing(self._window_batches(low, high, inclusive, False)) as batches:
            self._load_window(batches, False, inclusive)

    def _load_window(self, batches: Iterator[Batch], direct: bool, inclusive: bool) -> None:
        spec = self.job.watermark
        assert spec is not None
        for batch in batches:
            self._write(batch, direct)
            if batch.last_key is not None:
                self.position = batch.last_key
                # Without a tiebreaker a row batch may end in the middle of a tie: a resume reads
                # that timestamp again (harmless). A COPY range always takes whole ties.
                inclusive = (
                    spec.type is WatermarkType.TIMESTAMP
                    and not spec.tiebreaker
                    and batch.copy is None
                )
            self.save_checkpoint(
                **watermark_fields("last_value", self.position), inclusive=inclusive
            )

    def _window_batches(
        self, low: Watermark | None, high: Any, inclusive: bool, direct: bool
    ) -> Iterator[Batch]:
        size = self.job.batch_size
        soft = self.job.soft_delete
        skip_deleted = direct and soft is not None and soft.mode == "delete"
        if self.bulk:
            return postgres_copy.window_ranges(
                self.src, low, high, inclusive=inclusive, batch_size=size,
                skip_deleted=skip_deleted,
            )  # fmt: skip
        batches = self.src.read_window(low, high, inclusive=inclusive, batch_size=size)
        if not skip_deleted:
            return batches
        assert soft is not None
        column = self.src.describe().find(soft.column)
        assert column is not None
        return (
            Batch(
                rows=[r for r in b.rows if r[column.name] is None],
                last_key=b.last_key,
                refused=b.refused,
            )
            for b in batches
        )

    def _check_anomalies(self, now: datetime | None) -> None:
        """NULL watermarks are an error unless the job says otherwise; future rows are reported."""
        spec = self.job.watermark
        assert spec is not None
        found = self.src.anomalies(now)
        table, column = self.job.source.table, spec.column
        if found.null_rows:
            if spec.on_null == "error":
                raise SourceError(
                    f"job {self.job.job_id}: {found.null_rows} row(s) of {table} have a NULL "
                    f"{column}, which no window can read; fix them, or set watermark.on_null: "
                    "skip or include",
                    retryable=False,
                )
            verb = "skipped" if spec.on_null == "skip" else "included in every run"
            self.ctx.note(f"{found.null_rows} row(s) with a NULL {column} {verb}")
        if found.future_rows:
            latest = _bound_text(found.future_max)
            note = (
                f"{found.future_rows} row(s) have {column} after the source clock "
                f"(up to {latest}); they stay out of every window until then"
            )
            log.warning("job %s: %s", self.job.job_id, note)
            self.ctx.note(note)

    def _write(self, batch: Batch, direct: bool) -> None:
        self.ctx.check()
        self.ctx.set_phase("writing")
        self.ctx.set_record_hint(self._record_range(batch))
        write = self.dst.write_direct if direct else self.dst.merge_batch
        # A range a fast path refuses goes again as rows; rows the target refuses are bisected.
        written = write_bisecting(write, batch, check=self.ctx.check)
        failpoints.reach("after_target_commit")
        self.ctx.add(written.counts + Counts(rows_read=len(batch.refused)))
        self.bad_rows().handle([*batch.refused, *written.refused])

    # bad_rows() and save_checkpoint() are also what the parallel first load
    # (table_parallel.py) calls after each range it commits.
    def bad_rows(self) -> BadRows:
        return BadRows.of(self.ctx, self.job)

    def save_checkpoint(self, **fields: Any) -> None:
        data = {
            **self.checkpoint_base,
            **fields,
            "run_id": self.ctx.run_id,
            "batch_number": self.ctx.batch_number,
            "total_rows_processed": self.ctx.counts.rows_read,
            "last_checkpoint_at": clock.now(),
        }
        self.ctx.save_checkpoint(RunCheckpoint.model_validate(data).to_json())

    # ------------------------------------------------------------------ full

    def _full(self, previous: RunCheckpoint | None) -> None:
        spec = self.job.watermark
        ctx = self.ctx
        recovering = previous is not None
        after_pk = previous.primary_key() if previous is not None else None
        if previous is not None:
            high, reason = previous.window_high, previous.window_high_reason or "pinned"
            self.max_key = previous.max_key()
        elif spec is not None:
            ctx.set_phase("computing the upper bound")
            bound = self.src.upper_bound(None)
            high, reason = (None, bound.reason) if bound.hold else (bound.high, bound.reason)
        else:
            high, reason = None, "full load"
        self.checkpoint_base = {
            "mode": "full",
            "watermark_type": spec.type if spec else None,
            "window_high": high,
            "window_high_reason": reason,
            "recovery_mode": recovering,
        }
        ctx.set_upper_bound(_bound_text(high), reason)
        ctx.started(
            ("resuming full load" if recovering else "full load")
            + f" of {self.job.source.table} into {self.job.target.table}"
        )
        ctx.set_phase("staging")
        if not self.dst.stage_begin(after_pk) and after_pk is not None:
            log.warning(
                "job %s: the staging table is gone; the full load starts over", self.job.job_id
            )
            after_pk, self.max_key = None, None
        if self.bulk:
            batches = postgres_copy.key_ranges(
                self.src, after_pk, high, batch_size=self.job.batch_size
            )
        else:
            batches = self.src.read_all(after_pk, high, batch_size=self.job.batch_size)
        with _closing(batches):
            self._stage_all(batches)
        ctx.check()
        ctx.set_phase("replacing the target")
        merged = self.dst.stage_finish()
        ctx.replace_counts(
            Counts(
                rows_read=ctx.counts.rows_read,
                rows_written=merged.rows_written,
                rows_updated=merged.rows_updated,
                rows_deleted=merged.rows_deleted,
            )
        )
        self.position = self.max_key

    def _stage_all(self, batches: Iterator[Batch]) -> None:
        for batch in batches:
            self.ctx.check()
            self.ctx.set_record_hint(self._record_range(batch))
            written = write_bisecting(self._stage, batch, check=self.ctx.check)
            failpoints.reach("after_target_commit")
            self.ctx.add(Counts(rows_read=written.counts.rows_read + len(batch.refused)))
            staging = BadRows.of(self.ctx, self.job, staging=True)
            staging.handle([*batch.refused, *written.refused])
            self.max_key = later_of(self.max_key, batch.max_key_within)
            self.save_checkpoint(
                last_pk=[encode_value(v) for v in batch.last_pk or ()],
                **watermark_fields("max_key", self.max_key),
            )

    def _stage(self, batch: Batch) -> Counts:
        return Counts(rows_read=self.dst.stage_batch(batch))

    # ------------------------------------------------------------------ helpers

    def _record_range(self, batch: Batch) -> dict[str, Any]:
        if not batch.rows:
            return {}
        keys = self.job.primary_key
        first, last = batch.rows[0], batch.rows[-1]

        def pk(row: dict[str, Any]) -> Any:
            values = [encode_value(_lookup(row, k)) for k in keys]
            return values[0] if len(values) == 1 else values

        return {"batch_first_record_id": pk(first), "batch_last_record_id": pk(last)}

    def _describe(self, low: Watermark | None, high: Any, reason: str, recovering: bool) -> str:
        start = "the beginning" if low is None else str(low)
        prefix = "resuming " if recovering else ""
        source = self.config.resolve(self.job.source.connection).display_url
        return (
            f"{prefix}{self.job.source.table} ({source}) after {start} "
            f"up to {_bound_text(high)} ({reason})"
        )


@contextmanager
def _closing(batches: Iterator[Batch]) -> Iterator[Iterator[Batch]]:
    """Close a batch generator on the way out, even when the run stops mid-read."""
    try:
        yield batches
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


# The greatest tiebreaker value: (X, _AFTER_EVERY_ID) is after every row stamped X.
_AFTER_EVERY_ID = 2**63 - 1


def _lookup(row: dict[str, Any], name: str) -> Any:
    if name in row:
        return row[name]
    lowered = name.lower()
    return next((v for k, v in row.items() if k.lower() == lowered), None)


def _window_is_empty(low: Watermark | None, high: datetime | int | None) -> bool:
    """No key can lie in (low, high]: no bound at all, or a bound below the mark (a source
    clock that stepped back; the mark then stays where it is)."""
    if high is None:
        return True
    floor = _low_value(low)
    if floor is None:
        return False
    return bool(high < floor)  # type: ignore[operator]


def _low_value(mark: Watermark | None) -> datetime | int | None:
    if mark is None:
        return None
    return mark.id if mark.type is WatermarkType.INTEGER else mark.ts


def _bound_text(high: Any) -> str | None:
    if high is None:
        return None
    if isinstance(high, datetime):
        return high.isoformat().replace("+00:00", "Z")
    return str(high)
