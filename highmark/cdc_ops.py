"""Operating CDC jobs: how much log each one holds on its source, and removing what it set up.

A replication slot keeps every WAL segment from its restart position on; a forgotten slot fills
the source's disk. Each CDC job's *lag* is the bytes of log the source keeps for it (PostgreSQL:
WAL from the slot's restart position to the current position; MySQL/MariaDB: binlog bytes after
highmark's position, which the server keeps only as long as its expiry allows). ``highmark
status``, ``highmark cdc status``, ``highmark check``, the Prometheus metrics and the ``cdc_lag``
alert (past ``cdc.max_lag``) all read it from here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from highmark.config import ProjectConfig, TableJobSpec
from highmark.errors import HighmarkError, JobNotFoundError
from highmark.models import LoadType

if TYPE_CHECKING:
    from highmark.store.store import ControlStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CdcState:
    """One CDC job's log, as its source and the control tables see it."""

    job_id: str
    log: str  # what holds the log for it: "replication slot highmark_x", "binary log"
    connection: str
    position: str | None  # the position applied (None: never ran)
    lag_bytes: int | None  # bytes of log the source keeps for the job (None: unknown)
    max_lag: int | None
    in_project: bool = True  # False: gone from the project file, its log still set up
    error: str | None = None

    @property
    def over_limit(self) -> bool:
        return self.max_lag is not None and (self.lag_bytes or 0) > self.max_lag

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "over_limit": self.over_limit}


def cdc_jobs(config: ProjectConfig) -> list[TableJobSpec]:
    return [
        job
        for job in config.jobs.values()
        if isinstance(job, TableJobSpec) and job.load_type is LoadType.CDC
    ]


def state(
    config: ProjectConfig, store: ControlStore, job: TableJobSpec, *, in_project: bool = True
) -> CdcState:
    """Ask the source how much log ``job`` holds (an unreachable source is reported, not raised)."""
    from highmark.movers.cdc import change_source

    holder = "binary log"
    connection = job.source.connection
    try:
        if config.resolve(connection).url.get_backend_name() == "postgresql":
            holder = f"replication slot {job.slot_name}"
        record = store.get_watermark(job.job_id)
        mark = record.watermark() if record is not None else None
        source = change_source(config, job)
        try:
            position = (
                source.point(mark.id, mark.ts).text
                if mark is not None and mark.id is not None
                else None
            )
            lag = source.lag_bytes(mark.id if mark is not None else None)
        finally:
            source.close()
    except HighmarkError as exc:
        return CdcState(job.job_id, holder, connection, None, None, job.cdc_settings.max_lag,
                        in_project, str(exc))  # fmt: skip
    return CdcState(
        job.job_id, holder, connection, position, lag, job.cdc_settings.max_lag, in_project
    )


def states(config: ProjectConfig, store: ControlStore, job_id: str | None = None) -> list[CdcState]:
    """Every CDC job's state (or one's), and those of CDC jobs gone from the project file."""
    found = [state(config, store, job) for job in cdc_jobs(config) if job_id in (None, job.job_id)]
    for job in leftovers(config, store):
        if job_id in (None, job.job_id):
            found.append(state(config, store, job, in_project=False))
    return found


def leftovers(config: ProjectConfig, store: ControlStore) -> list[TableJobSpec]:
    """CDC jobs in etl_jobs but no longer in the project file (their log may still be held)."""
    jobs = []
    for record in store.list_jobs():
        if record.load_type != LoadType.CDC.value or record.job_id in config.jobs:
            continue
        spec = stored_spec(config, store, record.job_id)
        if spec is not None:
            jobs.append(spec)
    return jobs


def stored_spec(config: ProjectConfig, store: ControlStore, job_id: str) -> TableJobSpec | None:
    """A job's definition as etl_jobs keeps it (for a job gone from the file), if its
    connections are still defined."""
    from highmark.store.definitions import job_definition

    definition = job_definition(store, job_id)
    if not isinstance(definition, dict):
        return None
    wanted = ("load_type", "source", "target", "primary_key", "cdc", "soft_delete", "batch_size")
    try:
        spec = TableJobSpec.model_validate(
            {**{k: definition[k] for k in wanted if k in definition}, "job_id": job_id}
        )
    except ValueError:
        return None
    if spec.source.connection not in config.connections:
        return None
    return spec


def drop(config: ProjectConfig, store: ControlStore, job_id: str) -> list[str]:
    """Remove what a CDC job set up on its source (slot, publication) and forget its position,
    so that its next run takes a new snapshot. Returns what was removed."""
    from highmark.movers.cdc import change_source

    job = config.jobs.get(job_id)
    if job is None:
        job = stored_spec(config, store, job_id)
    if not isinstance(job, TableJobSpec) or job.load_type is not LoadType.CDC:
        raise JobNotFoundError(f"{job_id!r} is not a cdc job of this project")
    store.reset_watermark(job_id)  # refuses while a run is live
    source = change_source(config, job)
    try:
        return source.drop()
    finally:
        source.close()


def warn_removed(config: ProjectConfig, store: ControlStore, job_ids: list[str]) -> None:
    """Say what to drop for CDC jobs that just left the project file."""
    for job_id in job_ids:
        record = store.get_job(job_id)
        if record.load_type == LoadType.CDC.value:
            log.warning(
                "job %s (cdc) is no longer in the project file, but what it set up on its source "
                "may still hold log there (a replication slot keeps WAL): `highmark cdc drop %s` "
                "removes it",
                job_id, job_id,
            )  # fmt: skip
