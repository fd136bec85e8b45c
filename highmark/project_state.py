"""What a project keeps about its jobs, read and edited by hand: their marks (and the schema
changes of their targets), checkpoints, quarantined rows, and the API's audit log. The base of
:class:`highmark.project.Project`, which adds running jobs and operations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from highmark import clock
from highmark.checkpoint import RunCheckpoint, validate_partial
from highmark.config import JobSpec, ProjectConfig, parse_duration
from highmark.errors import ConfigError, JobNotFoundError
from highmark.models import MarkUpdate, Watermark, WatermarkRecord, WatermarkType
from highmark.store.checkpoints import CheckpointStore, Query, parse_path
from highmark.store.store import ControlStore

if TYPE_CHECKING:
    from highmark.models import RejectedRecord
    from highmark.rejected import RetryOutcome
    from highmark.store.audit import AuditRecord
    from highmark.store.schema_changes import SchemaChangeRecord
    from highmark.store.watermarks import WatermarkChange


class ProjectState:
    """A project's configuration and control store, and the state it keeps about its jobs."""

    def __init__(self, config: ProjectConfig, store: ControlStore) -> None:
        self.config = config
        self.store = store

    def job(self, job_id: str) -> JobSpec:
        """The definition of ``job_id`` in the project file."""
        try:
            return self.config.jobs[job_id]
        except KeyError:
            known = ", ".join(sorted(self.config.jobs)) or "none"
            raise JobNotFoundError(
                f"unknown job {job_id!r} in {self.config.path} (jobs: {known})"
            ) from None

    def _since(self, since: timedelta | str | datetime | None) -> datetime | None:
        if isinstance(since, str):
            since = parse_duration(since)
        if isinstance(since, timedelta):
            since = self.store.now() - since
        return since

    # ------------------------------------------------------------------ bad rows

    def rejected(
        self,
        job_id: str,
        *,
        limit: int | None = None,
        run_id: int | None = None,
        before: int | None = None,
        newest_first: bool = False,
    ) -> list[RejectedRecord]:
        """The job's quarantined bad rows (``on_bad_rows: quarantine``), oldest first (or newest
        first): only those of run ``run_id``, only those older than row ``before``."""
        self.store.get_job(job_id)
        return self.store.rejected_rows(
            job_id, limit=limit, run_id=run_id, before=before, newest_first=newest_first
        )

    def retry_rejected(self, job_id: str) -> RetryOutcome:
        """Load the job's quarantined rows again, the target fixed (highmark/rejected.py)."""
        from highmark.rejected import retry_rejected

        self.store.get_job(job_id)
        return retry_rejected(self.store, self.config, job_id)

    # ------------------------------------------------------------------ watermarks

    def watermark(self, job_id: str) -> WatermarkRecord | None:
        """The job's committed mark (the first, for a job that keeps one per source table)."""
        self.store.get_job(job_id)
        return self.store.get_watermark(job_id)

    def watermarks(self, job_id: str) -> list[WatermarkRecord]:
        """The job's committed marks, one per source table (repository, project…)."""
        self.store.get_job(job_id)
        return self.store.get_watermarks(job_id)

    def set_watermark(
        self,
        job_id: str,
        value: str,
        *,
        source_table: str | None = None,
        changed_by: str | None = None,
    ) -> list[WatermarkRecord]:
        """Set a job's marks by hand, e.g. to backfill from a date: ``2024-01-01T00:00:00Z``,
        ``2024-01-01T00:00:00Z/1234`` (with a tiebreaker), or an integer id. A job with a mark
        per source table sets them all, or only ``source_table``'s."""
        job = self.job(job_id)
        specs = job.marks()
        if job.load_type.value == "cdc":
            raise ConfigError(
                f"job {job_id} reads a log: its position cannot be set by hand (`highmark "
                f"watermark reset {job_id}` or `run {job_id} --full-refresh` takes a new snapshot)"
            )
        if not specs:
            raise ConfigError(f"job {job_id} has no watermark (load_type {job.load_type.value})")
        chosen = [s for s in specs if source_table in (None, s.source_table)]
        if not chosen:
            known = ", ".join(s.source_table for s in specs)
            raise ConfigError(f"job {job_id} has no mark for {source_table!r} (it has: {known})")
        updates = []
        for spec in chosen:
            mark = parse_watermark(value, spec.type)
            if mark.type is WatermarkType.TIMESTAMP and mark.id is not None and not spec.tiebreaker:
                raise ConfigError(
                    f"job {job_id} has no watermark.tiebreaker: give the timestamp alone, "
                    f"not {value!r}"
                )
            updates.append(MarkUpdate(spec.source_table, spec.column, mark))
        kept = [
            MarkUpdate(r.source_table, r.watermark_column, w)
            for r in self.store.get_watermarks(job_id)
            if r.source_table not in {u.source_table for u in updates}
            and r.source_table in {s.source_table for s in specs}
            and (w := r.watermark()) is not None
        ]
        return self.store.set_watermarks(job_id, [*kept, *updates], changed_by=changed_by)

    def reset_watermark(self, job_id: str, *, changed_by: str | None = None) -> None:
        """Forget the job's marks and checkpoint: the next run starts from the beginning."""
        self.store.reset_watermark(job_id, changed_by=changed_by)

    def watermark_history(self, job_id: str, *, limit: int | None = 100) -> list[WatermarkChange]:
        """How the job's marks moved, newest first: runs' commits, values set by hand, resets,
        rollbacks (``etl_watermark_history``)."""
        self.store.get_job(job_id)
        return self.store.watermark_history(job_id, limit=limit)

    def rollback_watermark(
        self, job_id: str, run_id: int, *, changed_by: str | None = None
    ) -> list[WatermarkRecord]:
        """Put the job's marks back to what successful run ``run_id`` left (and clear the
        checkpoint): the next run loads again what came after."""
        return self.store.rollback_watermarks(job_id, run_id, changed_by=changed_by)

    def schema_history(self, job_id: str, *, limit: int | None = 100) -> list[SchemaChangeRecord]:
        """The changes runs applied to (or found in) the job's target tables' columns, oldest
        first: columns added, widened, or no longer in the source (``etl_schema_changes``)."""
        from highmark.store.schema_changes import SchemaHistory

        self.store.get_job(job_id)
        return SchemaHistory(self.store).list(job_id, limit=limit)

    # ------------------------------------------------------------------ audit

    def audit(
        self,
        *,
        limit: int | None = 100,
        since: timedelta | str | datetime | None = None,
        actor: str | None = None,
    ) -> list[AuditRecord]:
        """The audit log of the REST API and dashboard (``etl_audit``), newest first."""
        from highmark.store.audit import AuditLog

        return AuditLog(self.store).list(limit=limit, since=self._since(since), actor=actor)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, job_id: str) -> dict[str, Any] | None:
        return self.store.get_checkpoint(job_id)

    def reset_checkpoint(self, job_id: str) -> None:
        """Clear the checkpoint and the job's error state (retries waiting on a failure)."""
        self._checkpoints().reset(job_id)

    def set_checkpoint(self, job_id: str, key: str, value: Any) -> dict[str, Any]:
        """Set ``key`` (a path such as ``a.b``) to a JSON value, in the database."""
        return self._checkpoints().set(job_id, parse_path(key), value, self._edit_check(job_id))

    def append_checkpoint(self, job_id: str, key: str, value: Any) -> dict[str, Any]:
        """Append a value to the array at ``key`` (created when missing)."""
        return self._checkpoints().append(job_id, parse_path(key), value, self._edit_check(job_id))

    def incr_checkpoint(self, job_id: str, key: str, amount: int | float = 1) -> dict[str, Any]:
        """Add ``amount`` to the number at ``key`` (0 when missing)."""
        return self._checkpoints().incr(job_id, parse_path(key), amount, self._edit_check(job_id))

    def find_checkpoints(self, expression: str) -> list[tuple[str, dict[str, Any]]]:
        """Jobs whose checkpoint matches ``recovery_mode=true``, ``batch_number>5``,
        ``repositories_processed?repo1``…"""
        return self._checkpoints().find(Query.parse(expression))

    def _edit_check(self, job_id: str) -> Callable[[str, dict[str, Any]], None]:
        job = self.config.jobs.get(job_id)
        model = job.checkpoint_model() if job is not None else RunCheckpoint
        return lambda jid, data: validate_partial(jid, model, data)

    def _checkpoints(self) -> CheckpointStore:
        return CheckpointStore(self.store)


def parse_watermark(value: str, kind: WatermarkType) -> Watermark:
    """Parse a watermark typed by a user; raise ConfigError saying what is expected."""
    text = value.strip()
    try:
        if kind is WatermarkType.INTEGER:
            return Watermark(kind, id=int(text))
        stamp, _, tiebreak = text.partition("/")
        ts = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
        return Watermark(
            kind, ts=clock.ensure_utc(ts), id=int(tiebreak) if tiebreak.strip() else None
        )
    except ValueError:
        expected = (
            "an integer"
            if kind is WatermarkType.INTEGER
            else "an ISO 8601 timestamp such as 2024-01-31T12:00:00Z, optionally /ID"
        )
        raise ConfigError(f"watermark value {value!r} is not {expected}") from None
