"""``highmark rejected retry``: load a job's quarantined rows again, once the target was fixed.

Each quarantined row is read again from the source by its primary key (so a row fixed at the
source since comes as it is now) and merged into the target as a run's batch is (bisected, so
that the rows still refused stay behind without holding the others back). Rows that went in
leave the quarantine; rows no longer in the source leave it too (there is nothing left to load);
rows refused again stay, with the new error and one more retry counted. A merge never overwrites
a newer version of a row, so a retry beside a running job is harmless.

An API job's quarantined records are written again as they were kept (``source_data``: every
field and ``raw``), bisected the same way. An entity with a version (Jira's ``updated``) keeps a
newer copy a later run loaded; one without has the kept record written over whatever is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.types import NullType

from highmark.bad_rows import record_id, rejected_row
from highmark.checkpoint import decode_value
from highmark.config import ProjectConfig, TableJobSpec
from highmark.connectors.spec import ApiJobSpec
from highmark.destinations.bisect import write_bisecting
from highmark.destinations.record_bisect import rewrite_rejected
from highmark.destinations.sql import SqlDestination
from highmark.errors import ConfigError
from highmark.models import RejectedRecord
from highmark.sources.base import Batch
from highmark.sources.sql import SqlSource
from highmark.store.store import ControlStore

# Quarantined API records written again per bisected batch.
RECORDS_PER_RETRY = 500


@dataclass(frozen=True)
class RetryOutcome:
    """What a retry did with the quarantined rows."""

    loaded: int = 0  # went in; removed from the quarantine
    refused: int = 0  # refused again; kept, with the new error
    gone: int = 0  # no longer in the source; removed

    def summary(self, job_id: str) -> str:
        return (
            f"{job_id}: {self.loaded} rejected row(s) loaded, {self.refused} refused again, "
            f"{self.gone} no longer in the source"
        )


def retry_rejected(store: ControlStore, config: ProjectConfig, job_id: str) -> RetryOutcome:
    """Load ``job_id``'s quarantined rows again; see the module docstring."""
    job = config.jobs.get(job_id)
    if isinstance(job, ApiJobSpec):
        return _retry_records(store, config, job)
    if not isinstance(job, TableJobSpec):
        raise ConfigError(f"job {job_id!r} is not a table or API job of {config.path}")
    records = store.rejected_rows(job_id)
    if not records:
        return RetryOutcome()
    source = SqlSource(config.resolve(job.source.connection), job.source, job)
    target = SqlDestination(config.resolve(job.target.connection), job.target, job)
    outcome = RetryOutcome()
    try:
        schema = source.describe()
        target.prepare(schema, config.database(job.source.connection).timezone)
        for start in range(0, len(records), job.batch_size):
            chunk = records[start : start + job.batch_size]
            batch = _read_again(source, job, chunk)
            written = write_bisecting(target.merge_batch, batch, give_up_after=None)
            refused = [
                rejected_row(r, job.source.table, job.primary_key)
                for r in [*batch.refused, *written.refused]
            ]
            read = [*batch.rows, *(r.row for r in batch.refused)]
            found = {_key(record_id(row, job.primary_key)) for row in read}
            still = {_key(r.source_record_id) for r in refused}
            done = [r.rejected_id for r in chunk if _key(r.source_record_id) not in still]
            store.release_rejected(job_id, done)
            store.rejected_again(job_id, refused)
            gone = sum(1 for r in chunk if _key(r.source_record_id) not in found)
            outcome = RetryOutcome(
                outcome.loaded + len(done) - gone,
                outcome.refused + len(refused),
                outcome.gone + gone,
            )
    finally:
        target.close()
        source.close()
    return outcome


def _retry_records(store: ControlStore, config: ProjectConfig, job: ApiJobSpec) -> RetryOutcome:
    """An API job's quarantined records written again as they were kept (an API cannot be asked
    for one record by key the same way for every connector): those that go in, or that a newer
    version stored since supersedes, leave the quarantine; a record of an entity the job no
    longer writes stays as it is."""
    records = store.rejected_rows(job.job_id)
    if not records:
        return RetryOutcome()
    writer = job.record_writer(config)
    records = [r for r in records if r.source_table in writer.entities and r.source_data]
    outcome = RetryOutcome()
    try:
        writer.prepare()
        for start in range(0, len(records), RECORDS_PER_RETRY):
            chunk = records[start : start + RECORDS_PER_RETRY]
            written = rewrite_rejected(
                writer, [(r.source_table, r.source_data or {}) for r in chunk]
            )
            still = {(r.source_table, _key(r.source_record_id)) for r in written.refused}
            done = [
                r.rejected_id
                for r in chunk
                if (r.source_table, _key(r.source_record_id)) not in still
            ]
            store.release_rejected(job.job_id, done)
            store.rejected_again(job.job_id, written.refused)
            outcome = RetryOutcome(
                outcome.loaded + len(done), outcome.refused + len(written.refused), outcome.gone
            )
    finally:
        writer.close()
    return outcome


def _read_again(source: SqlSource, job: TableJobSpec, records: list[RejectedRecord]) -> Batch:
    """The source rows of ``records``, read by primary key and converted as a run reads them."""
    table = source.describe().clause()
    columns = [table.c[source.describe().find(c).name] for c in job.primary_key]  # type: ignore[union-attr]
    wanted = []
    for record in records:
        values = record.source_record_id
        values = values if isinstance(values, list) and len(columns) > 1 else [values]
        wanted.append(
            and_(*(col == _raw(decode_value(v)) for col, v in zip(columns, values, strict=True)))
        )
    with source._errors("cannot read"), source.engine.connect() as conn:
        raw_rows = conn.execute(select(table).where(or_(*wanted)).order_by(*columns)).all()
    return source._batch(raw_rows, lambda _row: None, by_pk=False)


def _key(value: Any) -> str:
    return repr(value)


def _raw(value: Any) -> Any:
    return bindparam(None, value, type_=NullType())
