"""The CDC mover (``load_type: cdc``): a source table's log applied to a target table.

A first run (or ``--full-refresh``, or a job whose position was reset) sets the log up — a slot and
publication on PostgreSQL, the binlog's current position on MySQL/MariaDB — *then* loads a snapshot
of the table, resumably, through a staging table, and finally applies every change logged since
the log was set up. Changes logged between the setup and the snapshot are applied although the
snapshot already holds them: every change sets a whole row or removes it, so applying it again
leaves the row as it is (the last change to a key wins, in log order), and the target ends equal
to the source.

Every run then applies the changes up to the log's end as it was when the run started, in commit
order, a set of whole transactions per target transaction. After each set: the target commits,
the checkpoint records the position, and only then may the source let the log go (the slot is
advanced). A run killed anywhere replays from the last position the source kept, which is never
past the one recorded; replays change nothing and count nothing.

Changes (and snapshot rows) the target refuses for their values are bisected out and handled by
the job's ``on_bad_rows`` (highmark/bad_rows.py): quarantined, they are behind the position saved
after their set; failing the run, they are not, so the next run meets them again.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from highmark import clock, failpoints
from highmark.bad_rows import BadRows
from highmark.checkpoint import encode_value
from highmark.config import ProjectConfig, TableJobSpec
from highmark.config.tables import CDC_MARK_COLUMN
from highmark.destinations.bisect import write_bisecting
from highmark.destinations.changes import ChangeDestination
from highmark.errors import SourceError
from highmark.models import Counts, MarkUpdate, RefusedRow, Watermark, WatermarkType
from highmark.movers.base import RunContext
from highmark.movers.cdc_checkpoint import CdcCheckpoint
from highmark.sources import postgres_copy
from highmark.sources.base import Batch
from highmark.sources.changes import ChangeSource, LogPoint
from highmark.sources.sql import SqlSource

log = logging.getLogger(__name__)


def change_source(config: ProjectConfig, job: TableJobSpec) -> ChangeSource:
    """The change log of ``job``'s source, by the source's database."""
    connection = config.resolve(job.source.connection)
    backend = connection.url.get_backend_name()
    if backend == "postgresql":
        from highmark.sources.cdc_postgres import PostgresChanges

        return PostgresChanges(connection, job)
    if backend == "mysql":
        from highmark.sources.cdc_mysql import MysqlChanges

        return MysqlChanges(connection, job)
    raise SourceError(
        f"job {job.job_id}: load_type cdc reads PostgreSQL or MySQL/MariaDB sources, not "
        f"{backend} ({connection.display_url})",
        retryable=False,
    )


class CdcMover:
    """Moves one CDC job's changes; see the module docstring."""

    def __init__(self, config: ProjectConfig, job: TableJobSpec) -> None:
        self.config = config
        self.job = job
        self.log: ChangeSource | None = None
        self.destination: ChangeDestination | None = None
        self.point: LogPoint | None = None
        self.zone = config.database(job.source.connection).timezone

    def move(self, ctx: RunContext) -> list[MarkUpdate]:
        self.ctx = ctx
        job = self.job
        self.log = change_source(self.config, job)
        self.destination = ChangeDestination(
            self.config.resolve(job.target.connection), job.target, job
        )
        ctx.set_phase("describing source")
        self.log.describe()
        previous = self._previous()
        committed = self._committed()
        if ctx.full_refresh or (previous is None and committed is None):
            ctx.set_phase("setting up the log")
            self.point = self.log.start()
            self._save("snapshot")
            self._snapshot(None, recovering=False)
        elif previous is not None and previous.phase == "snapshot":
            self.log.resume(previous.last_value_integer)
            self.point = self.log.point(previous.last_value_integer, previous.last_value_timestamp)
            self._snapshot(previous.primary_key(), recovering=True)
        else:
            start = previous.last_value_integer if previous is not None else None
            at = previous.last_value_timestamp if previous is not None else None
            if start is None:
                assert committed is not None and committed.id is not None
                start, at = committed.id, committed.ts
            self.log.resume(start)
            self.point = self.log.point(start, at)
        self._stream(recovering=previous is not None)
        assert self.point is not None
        mark = Watermark(WatermarkType.LOG_POSITION, ts=self.point.at, id=self.point.position)
        return [MarkUpdate(job.source.table, CDC_MARK_COLUMN, mark)]

    def close(self) -> None:
        for part in (self.log, self.destination):
            if part is not None:
                part.close()

    # ------------------------------------------------------------------ state

    def _committed(self) -> Watermark | None:
        record = self.ctx.marks.get(self.job.source.table)
        return record.watermark() if record is not None else None

    def _previous(self) -> CdcCheckpoint | None:
        data = self.ctx.previous_checkpoint
        if not data or data.get("mode") != "cdc":
            return None
        checkpoint = CdcCheckpoint.parse(self.job.job_id, data)
        if checkpoint.run_id == self.ctx.run_id or self.ctx.full_refresh:
            return None
        log.info(
            "job %s: resuming run %s's checkpoint (%s at %s)",
            self.job.job_id, checkpoint.run_id, checkpoint.phase, checkpoint.position,
        )  # fmt: skip
        return checkpoint

    def _save(self, phase: str, **fields: Any) -> None:
        point = self.point
        assert point is not None
        data = {
            "run_id": self.ctx.run_id,
            "mode": "cdc",
            "phase": phase,
            "batch_number": self.ctx.batch_number,
            "total_rows_processed": self.ctx.counts.rows_read,
            "recovery_mode": self.ctx.previous_checkpoint is not None,
            "last_value_integer": point.position,
            "last_value_timestamp": point.at,
            "position": point.text,
            "last_checkpoint_at": clock.now(),
            **fields,
        }
        self.ctx.save_checkpoint(CdcCheckpoint.model_validate(data).to_json())

    # ------------------------------------------------------------------ snapshot

    def _snapshot(self, after_pk: tuple[Any, ...] | None, *, recovering: bool) -> None:
        """Load the table as it is now into the target (staged, resumable by primary key)."""
        ctx, job, dst = self.ctx, self.job, self.destination
        assert dst is not None and self.point is not None
        ctx.started(
            f"{'resuming the ' if recovering else ''}snapshot of {job.source.table} into "
            f"{job.target.table}; changes from {self.point.text} follow"
        )
        reader = SqlSource(self.config.resolve(job.source.connection), job.source, self._reading())
        schema = reader.describe()
        ctx.set_phase("preparing target")
        for change in dst.prepare(schema, self.zone):
            ctx.schema_changed(change)
        ctx.set_phase("snapshot")
        if not dst.stage_begin(after_pk) and after_pk is not None:
            log.warning("job %s: the snapshot's staging table is gone; starting over", job.job_id)
            after_pk = None
        # COPY moves values server to server: a masked column's values must go through Python.
        if dst.takes_copy_from(schema.dialect) and not job.mask_columns:
            batches = postgres_copy.key_ranges(reader, after_pk, None, batch_size=job.batch_size)
        else:
            batches = reader.read_all(after_pk, None, batch_size=job.batch_size)
        bad_rows = BadRows.of(ctx, job)
        try:
            for batch in batches:
                ctx.check()
                # Rows the source cannot convert, or the stage refuses, are bad rows.
                staged = write_bisecting(self._stage, batch, check=ctx.check)
                failpoints.reach("after_target_commit")
                ctx.add(Counts(rows_read=staged.counts.rows_read + len(batch.refused)))
                bad_rows.handle([*batch.refused, *staged.refused])
                self._save("snapshot", last_pk=[encode_value(v) for v in batch.last_pk or ()])
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        ctx.check()
        ctx.set_phase("replacing the target")
        merged = dst.snapshot_finish(self.point.at or clock.now(), ctx.check)
        ctx.replace_counts(replace(merged.counts, rows_read=ctx.counts.rows_read))
        # Failing, the snapshot is taken again by the next run: the refused rows are not behind
        # any position. Quarantined, they are.
        bad_rows.handle(merged.refused)
        self._save("stream")
        ctx.note(f"snapshot loaded; changes applied from {self.point.text}")

    def _stage(self, batch: Batch) -> Counts:
        assert self.destination is not None
        return Counts(rows_read=self.destination.stage_batch(batch))

    def _reading(self) -> TableJobSpec:
        """The job as the snapshot reads it: no watermark; soft-deleted rows left out when the
        job deletes them (and the source has the column)."""
        soft = self.job.soft_delete
        assert self.log is not None
        keep = soft is not None and soft.mode == "delete" and self.log.describe().find(soft.column)
        return self.job.model_copy(
            update={"watermark": None, "soft_delete": soft if keep else None}
        )

    # ------------------------------------------------------------------ changes

    def _stream(self, *, recovering: bool) -> None:
        ctx, job, dst, source = self.ctx, self.job, self.destination, self.log
        assert dst is not None and source is not None and self.point is not None
        ctx.set_phase("reading the log")
        upto = source.current()
        start = self.point
        if upto.position < start.position:
            upto = start
        ctx.set_upper_bound(upto.text, "the log's end when the run started")
        ctx.started(
            f"{'resuming ' if recovering else ''}changes of {job.source.table} after "
            f"{start.text} up to {upto.text}"
        )
        prepared = False
        bad_rows = BadRows.of(ctx, job)
        for changes in source.changes(start, upto, job.batch_size):
            ctx.check()
            if not prepared or changes.new_columns:
                # Opened at the first change (a run with nothing to do never touches it).
                ctx.set_phase("preparing target")
                for change in dst.prepare(source.describe(), self.zone):
                    ctx.schema_changed(change)
                prepared = True
            counts = Counts()
            refused: list[RefusedRow] = []
            if not changes.empty:
                ctx.set_phase("applying changes")
                # Changes the target refuses for their values are found by bisection; the
                # others are applied. Quarantined, they are behind the position saved below.
                written = dst.apply_bisecting(changes, ctx.check)
                counts, refused = written.counts, written.refused
                failpoints.reach("after_target_commit")
            if changes.changes:
                ctx.add(counts.with_read(changes.changes))
            # Changes the source could not convert, then those the target refused: quarantined,
            # they are behind the position saved below; failing, the run stops before it.
            bad_rows.handle([*changes.refused.values(), *refused])
            if changes.end is not None:
                self.point = changes.end
                self._save("stream", log_end=upto.text)
                failpoints.reach("before_log_confirm")
                source.confirm(changes.end.position)
        if upto.position > self.point.position:
            # Nothing of this table's up to the log's end: the source may let that part go.
            self.point = LogPoint(upto.position, upto.text, self.point.at)
            self._save("stream", log_end=upto.text)
            source.confirm(upto.position)
        if dst.unreadable:
            ctx.note(
                f"{dst.unreadable} updated row(s) kept a large value the log did not carry and "
                f"the target did not have; `highmark reconcile {job.job_id} --repair` fixes them"
            )
