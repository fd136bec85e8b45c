"""Alerts: decide which events a finished run (or a stale job) raises, and deliver them.

Events, per job:

* ``failed``: a run failed — once per failure streak (the failed runs after the last success; a
  retry that fails again is the same streak), keyed on the streak's first failed run;
* ``consecutive_failures``: the streak reached ``alerting.consecutive_failures`` runs — once;
* ``recovered``: a success ended a failure streak — once;
* ``stale``: the last success (else the watermark's last move, else the job's registration) is older
  than the job's ``freshness`` — once per stale episode, until the next success.
* ``cdc_lag``: a CDC job's source keeps more log for it than its ``cdc.max_lag`` (once a day).
* ``rows_rejected``: a run succeeded but quarantined bad rows (``on_bad_rows: quarantine``) — once
  per run.

Cancelled runs neither start nor end a streak. Each alert is one ``etl_alerts`` row per sink, unique
on (sink, dedup_key), so concurrent processes raise it once. The process that raised it delivers it
at once (a few tries within seconds); what still fails is retried by :func:`deliver_pending` with
exponential backoff, up to ``alerting.max_attempts`` tries. Delivery problems are recorded and
logged, never raised: an alert never fails a run. Messages, payloads, errors and log lines are
scrubbed of secrets (webhook URLs and headers, the SMTP password, connection passwords).

The events themselves are worded in ``highmark.alerts.events``; recording and delivering them is
``highmark.alerts.delivery``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from highmark.alerts.delivery import (
    attempt,
    describe,
    hold,
    raise_and_deliver,
    register_sink_secrets,
    sink_id,
    warn_undelivered,
)
from highmark.alerts.events import Event, human, iso, run_events, schema_events
from highmark.config import ProjectConfig
from highmark.models import RunRecord, RunStatus, _jsonable
from highmark.store.alerts import AlertRecord, AlertStatus, AlertStore
from highmark.store.store import ControlStore

__all__ = [
    "AlertRecord",
    "AlertStatus",
    "CheckResult",
    "after_run",
    "check",
    "check_freshness",
    "deliver_pending",
    "list_alerts",
    "maybe_check",
    "sink_id",
]

log = logging.getLogger(__name__)
# httpx logs every request, URL and all, at INFO: webhook URLs carry their token.
for _name in ("httpx", "httpcore"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)

MAINTENANCE_TASK = "alerts"
PENDING_BATCH = 100  # due alerts retried per round


@dataclass(frozen=True)
class CheckResult:
    """What one round of periodic checks did: the alerts it raised, the retries it delivered."""

    raised: list[AlertRecord]
    delivered: int


def after_run(store: ControlStore, config: ProjectConfig, record: RunRecord) -> None:
    """Raise and deliver the alerts a finished run calls for. Never raises: a failing sink or
    alert store must never fail a run."""
    try:
        if not config.alerts or record.run_status not in (RunStatus.FAILED, RunStatus.SUCCESS):
            return  # cancelled runs neither start nor end a failure streak
        events = run_events(AlertStore(store), config, record) + schema_events(store, record)
        if events:
            raise_and_deliver(store, config, events)
    except Exception as exc:
        log.warning(
            "alerts for run %s of %s could not be raised: %s",
            record.run_id,
            record.job_id,
            describe(exc),
        )
        log.debug("alerts for run %s", record.run_id, exc_info=True)


def check_freshness(store: ControlStore, config: ProjectConfig) -> list[AlertRecord]:
    """Raise a ``stale`` alert for every active job whose last success is older than its
    ``freshness``, once per stale episode, and deliver them; returns the alerts raised now (one
    per sink), as delivered."""
    jobs = [job for job in config.jobs.values() if job.freshness is not None]
    if not config.alerts or not jobs:
        return []
    now, states = AlertStore(store).freshness([job.job_id for job in jobs])
    events: list[Event] = []
    for state in states:
        job = config.jobs[state.job_id]
        sla = job.freshness
        if not state.is_active or sla is None:
            continue
        if state.last_success_at is not None:
            since, key = state.last_success_at, f"run{state.last_success_run_id}"
            what = f"last success {human(now - since)} ago (run {state.last_success_run_id}, "
            what += f"{iso(since)})"
        elif state.watermark_updated_at is not None:
            since, key = state.watermark_updated_at, f"mark{iso(state.watermark_updated_at)}"
            what = f"watermark last moved {human(now - since)} ago ({iso(since)})"
        elif state.created_at is not None:
            since, key = state.created_at, "never"
            what = f"no successful run since it was registered {human(now - since)} ago"
        else:
            continue
        if now - since <= sla:
            continue
        message = f"{job.job_id} is stale: {what}; freshness {human(sla)}"
        events.append(
            Event(
                job_id=job.job_id,
                event="stale",
                dedup_key=f"stale:{job.job_id}:{key}",
                run_id=state.last_success_run_id,
                message=message,
                payload={
                    "last_success_run_id": state.last_success_run_id,
                    "last_success_at": _jsonable(state.last_success_at),
                    "stale_since": _jsonable(since + sla),
                    "age_seconds": int((now - since).total_seconds()),
                    "freshness_seconds": int(sla.total_seconds()),
                },
            )
        )
    return raise_and_deliver(store, config, events) if events else []


def deliver_pending(store: ControlStore, config: ProjectConfig) -> int:
    """Retry the alerts that are due (failed earlier, or left pending by a process that died);
    returns how many were delivered now. A sink that fails is not tried again in this call."""
    if not config.alerts:
        return 0
    register_sink_secrets(config)
    alert_store = AlertStore(store)
    sinks = {sink_id(sink): sink for sink in config.alerts}
    down: set[str] = set()
    delivered = 0
    due = alert_store.due(
        sinks=list(sinks), max_attempts=config.alerting.max_attempts, limit=PENDING_BATCH
    )
    for alert in due:
        sink = sinks[alert.sink]
        if alert.sink in down:
            continue
        claimed = alert_store.claim(alert.alert_id, alert.attempts, hold=hold(sink), due_only=True)
        if claimed is None:
            continue  # another process is on it
        result = attempt(alert_store, config, sink, claimed)
        if result.status == AlertStatus.SENT:
            delivered += 1
        else:
            down.add(alert.sink)
            warn_undelivered(result)
    return delivered


def check_cdc_lag(store: ControlStore, config: ProjectConfig) -> list[AlertRecord]:
    """Raise a ``cdc_lag`` alert for every CDC job whose source keeps more log for it than its
    ``cdc.max_lag`` (a forgotten or stuck job fills the source's disk): once a day per job while
    it lasts."""
    from highmark import cdc_ops

    jobs = [j for j in cdc_ops.cdc_jobs(config) if j.is_active and j.cdc_settings.max_lag]
    if not config.alerts or not jobs:
        return []
    day = store.now().date().isoformat()
    events = []
    for job in jobs:
        state = cdc_ops.state(config, store, job)
        if not state.over_limit:
            continue
        events.append(
            Event(
                job_id=job.job_id,
                event="cdc_lag",
                dedup_key=f"cdc_lag:{job.job_id}:{day}",
                run_id=None,
                message=(
                    f"{job.job_id}: {state.log} on {state.connection} holds {state.lag_bytes} "
                    f"bytes of log, over cdc.max_lag {state.max_lag}; run the job, or remove "
                    f"it with `highmark cdc drop {job.job_id}`"
                ),
                payload={"lag_bytes": state.lag_bytes, "max_lag": state.max_lag},
            )
        )
    return raise_and_deliver(store, config, events) if events else []


def check(store: ControlStore, config: ProjectConfig) -> CheckResult:
    """One round of periodic checks: raise ``stale`` and ``cdc_lag`` alerts, then retry what
    is due."""
    raised = check_freshness(store, config) + check_cdc_lag(store, config)
    return CheckResult(raised=raised, delivered=deliver_pending(store, config))


def maybe_check(
    store: ControlStore,
    config: ProjectConfig,
    *,
    worker_id: str,
    every: timedelta = timedelta(minutes=1),
) -> CheckResult | None:
    """:func:`check`, unless some process (of any worker) did it within ``every``; for workers
    to call as often as they like (``etl_maintenance`` makes it once between them)."""
    if not config.alerts:
        return None
    if not store.claim_maintenance(MAINTENANCE_TASK, every, worker_id):
        return None
    return check(store, config)


def list_alerts(
    store: ControlStore,
    limit: int | None = 50,
    job_id: str | None = None,
    status: str | None = None,
) -> list[AlertRecord]:
    """``etl_alerts`` rows, newest first: what was sent, and what could not be."""
    if status is not None and status not in AlertStatus.ALL:
        raise ValueError(f"status must be one of {', '.join(AlertStatus.ALL)}, not {status!r}")
    return AlertStore(store).recent(limit=limit, job_id=job_id, status=status)
