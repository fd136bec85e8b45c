"""A reconcile as a run of its own (``highmark reconcile JOB --repair``, or a ``reconcile``
schedule under the worker): claimed, leased, recorded in ``etl_job_runs`` with its counts like any
run of the job, but it never moves the watermark (it returns no mark).

It repairs leaf by leaf as the comparison finds differences (highmark/reconcile.py): missing and
different rows are upserted from the source, extra rows deleted (or marked deleted), one target
transaction per leaf. A leaf the target refuses for a data reason (a row its ``CHECK`` refuses) is
bisected down to the rows at fault, as a run's batch is; the others are repaired, and so are the
leaves after it: the bad rows then fail the run or are quarantined, by the job's ``on_bad_rows``.
Without ``repair`` a difference fails the run (a scheduled check that found something), naming
the command that repairs it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import PrivateAttr

from highmark import clock
from highmark.bad_rows import BadRows
from highmark.config import ProjectConfig, TableJobSpec
from highmark.destinations.changes import ChangeDestination
from highmark.errors import SourceError
from highmark.models import Counts, MarkUpdate, RefusedRow
from highmark.movers.base import Mover, RunContext
from highmark.reconcile import Leaf, Reconciler, ReconcileReport
from highmark.sources.changes import ChangeSet, Op, RowChange


class ReconcileMover:
    """Compare (and repair) one job's target; see the module docstring."""

    def __init__(
        self, config: ProjectConfig, job: TableJobSpec, *, repair: bool, chunk_rows: int
    ) -> None:
        self.config = config
        self.job = job
        self.repair = repair
        self.chunk_rows = chunk_rows
        self.destination: ChangeDestination | None = None
        self.refused: list[RefusedRow] = []  # rows whose repair the target refused
        self.report: ReconcileReport | None = None
        self.now: datetime = clock.now()

    def move(self, ctx: RunContext) -> list[MarkUpdate]:
        self.ctx = ctx
        job = self.job
        if ctx.previous_checkpoint:
            raise SourceError(
                f"job {job.job_id} has the checkpoint of an unfinished run: run the job first "
                f"(it resumes), then reconcile",
                retryable=True,
            )
        what = "reconcile --repair" if self.repair else "reconcile"
        ctx.started(f"{what} of {job.source.table} and {job.target.table}")
        ctx.set_phase("comparing")
        reconciler = Reconciler(
            self.config, job, chunk_rows=self.chunk_rows,
            on_leaf=self._repair if self.repair else None, check=ctx.check,
        )  # fmt: skip
        self.source_schema = reconciler.source_schema
        report = self.report = reconciler.run()
        report.run_id = ctx.run_id
        ctx.replace_counts(
            Counts(
                rows_read=report.rows_fetched,
                rows_written=ctx.counts.rows_written,
                rows_updated=ctx.counts.rows_updated,
                rows_deleted=ctx.counts.rows_deleted,
            )
        )
        ctx.note(f"{what}: {report.summary()}")
        if report.differences and not self.repair:
            raise SourceError(
                f"reconcile of {job.job_id} found {report.differences} difference(s) "
                f"({report.missing} missing, {report.extra} extra, {report.different} "
                f"different); repair them with `highmark reconcile {job.job_id} --repair`",
                retryable=False,
            )
        if self.repair:
            counts = ctx.counts
            report.repaired = {
                "rows_written": counts.rows_written,
                "rows_updated": counts.rows_updated,
                "rows_deleted": counts.rows_deleted,
            }
            BadRows.of(ctx, job).handle(self.refused)
        return []

    def _repair(self, leaf: Leaf) -> None:
        ctx = self.ctx
        if self.destination is None:
            self.destination = ChangeDestination(
                self.config.resolve(self.job.target.connection), self.job.target, self.job
            )
            zone = self.config.database(self.job.source.connection).timezone
            self.destination.prepare(self.source_schema, zone)
        changes = ChangeSet()
        keys = [self._key(row) for row in (*leaf.missing, *leaf.different)]
        for key, row in zip(keys, (*leaf.missing, *leaf.different), strict=True):
            changes.rows[key] = RowChange(Op.UPSERT, dict(row), self.now)
        for key in leaf.extra:
            kept = leaf.extra_rows.get(key)
            if kept is not None:  # the source has it, deleted: the target gets its mark
                changes.rows[key] = RowChange(Op.UPSERT, dict(kept), self.now)
            else:
                changes.rows[key] = RowChange(Op.DELETE, None, self.now)
        ctx.check()
        ctx.set_phase("repairing")
        written = self.destination.apply_bisecting(changes, ctx.check)
        ctx.add(written.counts)
        self.refused += written.refused
        ctx.set_phase("comparing")

    def _key(self, row: dict[str, Any]) -> tuple[Any, ...]:
        schema = self.source_schema
        return tuple(row[schema.find(k).name] for k in self.job.primary_key)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.destination is not None:
            self.destination.close()


class ReconcileJob(TableJobSpec):
    """The job as a reconcile runs it: the same job (its runs, its marks), another mover."""

    kind: ClassVar[str] = "sql"
    _reconcile_mover: Any = PrivateAttr(default=None)

    def mover(self, config: ProjectConfig) -> Mover:
        mover: Mover = self._reconcile_mover
        return mover


def reconcile_job(job: TableJobSpec, mover: ReconcileMover) -> ReconcileJob:
    view = ReconcileJob.model_construct(
        **{name: getattr(job, name) for name in type(job).model_fields}
    )
    view._reconcile_mover = mover
    return view
