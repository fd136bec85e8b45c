"""A job's ``reconcile: {schedule: …, repair: …}``: workers start the reconcile when it is due.

Each fire time is claimed once between all workers (highmark/store/due.py), then the reconcile
runs in a child process as a run of the job (``triggered_by = scheduler``): it repairs what
differs, or, without ``repair``, fails when something does (so the job's alerts say so). A job
that is running when its reconcile is due is waited for, a while.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from datetime import datetime, timedelta
from multiprocessing.process import BaseProcess

from highmark.config import ProjectConfig, TableJobSpec
from highmark.store.store import ControlStore

log = logging.getLogger("highmark.worker")

TASK_PREFIX = "reconcile:"
BUSY_RETRIES = 60
BUSY_WAIT_SECONDS = 5.0


def latest_fire(expression: str, zone: str | None, now: datetime) -> datetime:
    """The last fire time at or before ``now``, in UTC."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    local = now.astimezone(ZoneInfo(zone or "UTC"))
    fire: datetime = croniter(expression, local + timedelta(microseconds=1)).get_prev(datetime)
    return fire.astimezone(now.tzinfo)


def start_due(config: ProjectConfig, store: ControlStore, worker_id: str) -> list[BaseProcess]:
    """Start the reconciles that are due now (each in a child process); return the children."""
    jobs = [
        job
        for job in config.jobs.values()
        if isinstance(job, TableJobSpec)
        and job.is_active
        and job.reconcile is not None
        and job.reconcile.schedule
    ]
    if not jobs:
        return []
    now = store.now()
    started: list[BaseProcess] = []
    for job in jobs:
        settings = job.reconcile
        assert settings is not None and settings.schedule is not None
        fire = latest_fire(settings.schedule, settings.schedule_timezone, now)
        from highmark.store.due import claim_fire

        if not claim_fire(store, TASK_PREFIX + job.job_id, fire, worker_id):
            continue
        from highmark import db

        db.dispose_all()  # the child must not share pooled connections with this process
        process = multiprocessing.get_context("fork").Process(
            target=_child, args=(config, job.job_id, settings.repair),
            name=f"highmark-reconcile-{job.job_id}",
        )  # fmt: skip
        process.start()
        log.info("worker %s: reconcile of %s due (pid %s)", worker_id, job.job_id, process.pid)
        started.append(process)
    return started


def _child(config: ProjectConfig, job_id: str, repair: bool) -> None:
    from highmark import db
    from highmark.errors import HighmarkError, JobAlreadyRunningError
    from highmark.models import TriggeredBy
    from highmark.project import Project

    db.dispose_all()
    project = Project(config, ControlStore.open(config.control_url(), migrate_schema=False))
    for _ in range(BUSY_RETRIES):
        try:
            result = project.reconcile(
                job_id, repair=repair, as_run=True, triggered_by=TriggeredBy.SCHEDULER
            )
        except JobAlreadyRunningError:
            time.sleep(BUSY_WAIT_SECONDS)
            continue
        except HighmarkError as exc:
            log.error("reconcile of %s: %s", job_id, exc)
            raise SystemExit(1) from None
        log.info("reconcile of %s: %s", job_id, result.report.summary())
        raise SystemExit(0 if result.run.run_status.value == "success" else 1)
    log.warning("reconcile of %s skipped: the job kept running", job_id)
    raise SystemExit(1)
