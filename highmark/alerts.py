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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import smtplib
import ssl
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import httpx

from highmark.config import CommandSink, EmailSink, ProjectConfig, SmtpSettings, WebhookSink
from highmark.errors import one_line
from highmark.models import RunRecord, RunStatus, _jsonable
from highmark.redact import MASK, register_secret, scrub, scrub_json
from highmark.store.alerts import AlertRecord, AlertStatus, AlertStore, NewAlert, Streak
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

Sink = WebhookSink | EmailSink | CommandSink

# A new alert is tried at once, a few times within seconds (the run waits for it) ...
IMMEDIATE_TRIES = 3
IMMEDIATE_PAUSES = (0.5, 1.0)
IMMEDIATE_BUDGET_SECONDS = 5.0
# ... then by deliver_pending(), after 30 s, 1 min, 2 min … (capped), up to alerting.max_attempts.
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
PENDING_BATCH = 100
MESSAGE_LIMIT = 500
MAINTENANCE_TASK = "alerts"

_TITLES = {
    "failed": "run failed",
    "consecutive_failures": "failing repeatedly",
    "recovered": "recovered",
    "stale": "stale",
    "cdc_lag": "log held on the source",
    "schema_changed": "target schema changed",
    "rows_rejected": "bad rows quarantined",
}
_COLORS = {  # Teams themeColor
    "failed": "D7263D",
    "consecutive_failures": "8B0000",
    "recovered": "2EB67D",
    "stale": "F0A202",
    "cdc_lag": "F0A202",
    "schema_changed": "1F77B4",
    "rows_rejected": "F0A202",
}


class DeliveryError(Exception):
    """A sink did not take an alert (one line, said by highmark, scrubbed before it is kept)."""


@dataclass(frozen=True)
class Event:
    """An alert to raise, before it is fanned out to the sinks that want it."""

    job_id: str
    event: str
    dedup_key: str
    run_id: int | None
    message: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    """What one round of periodic checks did: the alerts it raised, the retries it delivered."""

    raised: list[AlertRecord]
    delivered: int


# -------------------------------------------------------------------------------- public API


def after_run(store: ControlStore, config: ProjectConfig, record: RunRecord) -> None:
    """Raise and deliver the alerts a finished run calls for. Never raises: a failing sink or
    alert store must never fail a run."""
    try:
        if not config.alerts or record.run_status not in (RunStatus.FAILED, RunStatus.SUCCESS):
            return  # cancelled runs neither start nor end a failure streak
        events = _run_events(AlertStore(store), config, record) + _schema_events(store, record)
        if events:
            _raise_and_deliver(store, config, events)
    except Exception as exc:
        log.warning(
            "alerts for run %s of %s could not be raised: %s",
            record.run_id,
            record.job_id,
            _describe(exc),
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
            what = f"last success {_human(now - since)} ago (run {state.last_success_run_id}, "
            what += f"{_iso(since)})"
        elif state.watermark_updated_at is not None:
            since, key = state.watermark_updated_at, f"mark{_iso(state.watermark_updated_at)}"
            what = f"watermark last moved {_human(now - since)} ago ({_iso(since)})"
        elif state.created_at is not None:
            since, key = state.created_at, "never"
            what = f"no successful run since it was registered {_human(now - since)} ago"
        else:
            continue
        if now - since <= sla:
            continue
        message = f"{job.job_id} is stale: {what}; freshness {_human(sla)}"
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
    return _raise_and_deliver(store, config, events) if events else []


def deliver_pending(store: ControlStore, config: ProjectConfig) -> int:
    """Retry the alerts that are due (failed earlier, or left pending by a process that died);
    returns how many were delivered now. A sink that fails is not tried again in this call."""
    if not config.alerts:
        return 0
    _register_sink_secrets(config)
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
        claimed = alert_store.claim(alert.alert_id, alert.attempts, hold=_hold(sink), due_only=True)
        if claimed is None:
            continue  # another process is on it
        result = _attempt(alert_store, config, sink, claimed)
        if result.status == AlertStatus.SENT:
            delivered += 1
        else:
            down.add(alert.sink)
            _warn_undelivered(result)
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
    return _raise_and_deliver(store, config, events) if events else []


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


def sink_id(sink: Sink) -> str:
    """The name a sink's alerts are recorded under: readable, secret-free, and distinct for two
    sinks that differ in where they deliver (two Slack webhooks on one host are two sinks)."""
    identity: list[Any]
    if isinstance(sink, WebhookSink):
        identity = ["webhook", sink.url, sink.format]
    elif isinstance(sink, EmailSink):
        identity = ["email", sorted(sink.to), sink.smtp.host, sink.smtp.port]
    else:
        identity = ["command", sink.command]
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:8]
    return f"{scrub(sink.name)[:200]} {digest}"


# -------------------------------------------------------------------------------- events


def _run_events(alert_store: AlertStore, config: ProjectConfig, record: RunRecord) -> list[Event]:
    job_id = record.job_id
    if record.run_status is RunStatus.SUCCESS:
        rejected = _rejected_events(record)
        streak = alert_store.failure_streak(job_id, upto_run_id=record.run_id - 1)
        if not streak.failures:
            return rejected
        message = f"{job_id} recovered: run {record.run_id} succeeded after {_failed_runs(streak)}"
        return [
            *rejected,
            Event(
                job_id=job_id,
                event="recovered",
                dedup_key=f"recovered:{job_id}:{streak.first_run_id}",
                run_id=record.run_id,
                message=message,
                payload={
                    "failures": streak.failures,
                    "first_failed_run_id": streak.first_run_id,
                    "last_failed_run_id": streak.last_run_id,
                },
            ),
        ]
    streak = alert_store.failure_streak(job_id, upto_run_id=record.run_id)
    if not streak.failures:
        return []
    error = _clip(one_line(record.error_message or "no error message recorded"))
    facts = {
        "error_message": error,
        "failures": streak.failures,
        "first_failed_run_id": streak.first_run_id,
        "last_failed_run_id": streak.last_run_id,
    }
    events = [
        Event(
            job_id=job_id,
            event="failed",
            dedup_key=f"failed:{job_id}:{streak.first_run_id}",
            run_id=record.run_id,
            message=f"{job_id} failed (run {record.run_id}): {error}",
            payload=facts,
        )
    ]
    if streak.failures >= config.alerting.consecutive_failures:
        events.append(
            Event(
                job_id=job_id,
                event="consecutive_failures",
                dedup_key=f"consecutive_failures:{job_id}:{streak.first_run_id}",
                run_id=record.run_id,
                message=f"{job_id} failed {streak.failures} times in a row "
                f"(runs {streak.first_run_id} to {streak.last_run_id}); last error: {error}",
                payload={**facts, "threshold": config.alerting.consecutive_failures},
            )
        )
    return events


def _schema_events(store: ControlStore, record: RunRecord) -> list[Event]:
    """One ``schema_changed`` event for the columns a run added, widened or found dropped."""
    from highmark.store.schema_changes import SchemaHistory

    changes = SchemaHistory(store).list(record.job_id, run_id=record.run_id)
    if not changes:
        return []
    said = "; ".join(c.change().describe().removeprefix("schema change: ") for c in changes)
    return [
        Event(
            job_id=record.job_id,
            event="schema_changed",
            dedup_key=f"schema_changed:{record.job_id}:{record.run_id}",
            run_id=record.run_id,
            message=f"{record.job_id} (run {record.run_id}): {said}",
            payload={"changes": [c.to_json() for c in changes]},
        )
    ]


def _rejected_events(record: RunRecord) -> list[Event]:
    if not record.rows_rejected:
        return []
    return [
        Event(
            job_id=record.job_id,
            event="rows_rejected",
            dedup_key=f"rows_rejected:{record.job_id}:{record.run_id}",
            run_id=record.run_id,
            message=f"{record.job_id}: run {record.run_id} quarantined {record.rows_rejected} bad "
            f"row(s) (highmark rejected {record.job_id})",
            payload={"rows_rejected": record.rows_rejected},
        )
    ]


def _failed_runs(streak: Streak) -> str:
    if streak.failures == 1:
        return f"1 failed run (run {streak.first_run_id})"
    return f"{streak.failures} failed runs (runs {streak.first_run_id} to {streak.last_run_id})"


def _raise_and_deliver(
    store: ControlStore, config: ProjectConfig, events: Sequence[Event]
) -> list[AlertRecord]:
    """Record each event once per sink that wants it, then deliver the rows this call created
    (sinks in parallel, each sink's alerts in order)."""
    _register_sink_secrets(config)
    alert_store = AlertStore(store)
    groups: dict[str, tuple[Sink, list[AlertRecord]]] = {}
    for event in events:
        job = config.jobs.get(event.job_id)
        title = f"[highmark] {event.job_id}: {_TITLES.get(event.event, event.event)}"
        payload = {
            "event": event.event,
            "job_id": event.job_id,
            "job_name": job.job_name if job else event.job_id,
            "run_id": event.run_id,
            "title": title,
            "message": event.message,
            **event.payload,
            "dedup_key": event.dedup_key,
        }
        for sink in config.alerts:
            if not sink.wants(event.job_id, event.event):
                continue
            name = sink_id(sink)
            created = alert_store.raise_alert(
                NewAlert(
                    job_id=event.job_id,
                    event=event.event,
                    dedup_key=event.dedup_key,
                    sink=name,
                    run_id=event.run_id,
                    message=scrub(event.message),
                    payload=scrub_json(payload),
                ),
                hold=_hold(sink),
            )
            if created is not None:
                groups.setdefault(name, (sink, []))[1].append(created)
    if not groups:
        return []
    work = list(groups.values())
    if len(work) == 1:
        return _deliver_group(alert_store, config, *work[0])
    with ThreadPoolExecutor(max_workers=len(work), thread_name_prefix="highmark-alert") as pool:
        results = pool.map(lambda item: _deliver_group(alert_store, config, *item), work)
        return [record for group in results for record in group]


def _deliver_group(
    alert_store: AlertStore, config: ProjectConfig, sink: Sink, alerts: list[AlertRecord]
) -> list[AlertRecord]:
    out: list[AlertRecord] = []
    sink_down = False
    for alert in alerts:
        try:
            if sink_down:
                # The sink just failed every try: one more try each, not another burst.
                result = _try_now(alert_store, config, sink, alert, tries=1)
            else:
                result = _try_now(alert_store, config, sink, alert, tries=IMMEDIATE_TRIES)
        except Exception as exc:  # the store failed us: the alert stays pending for later
            log.warning("alert %s could not be delivered now: %s", alert.alert_id, _describe(exc))
            result = alert
        if result.status != AlertStatus.SENT:
            sink_down = True
            _warn_undelivered(result)
        out.append(result)
    return out


def _try_now(
    alert_store: AlertStore, config: ProjectConfig, sink: Sink, alert: AlertRecord, tries: int
) -> AlertRecord:
    """A few tries right away, within a few seconds (a sink that times out gets one)."""
    started = time.monotonic()
    tries = min(tries, config.alerting.max_attempts)
    current = alert
    for i in range(tries):
        claimed = alert_store.claim(
            current.alert_id, current.attempts, hold=_hold(sink), due_only=False
        )
        if claimed is None:
            return current
        current = _attempt(alert_store, config, sink, claimed)
        if current.status == AlertStatus.SENT or i + 1 >= tries:
            break
        pause = IMMEDIATE_PAUSES[min(i, len(IMMEDIATE_PAUSES) - 1)]
        if time.monotonic() - started + pause > IMMEDIATE_BUDGET_SECONDS:
            break
        time.sleep(pause)
    return current


def _attempt(
    alert_store: AlertStore, config: ProjectConfig, sink: Sink, claimed: AlertRecord
) -> AlertRecord:
    """Deliver a claimed alert once and record how it went."""
    error = _send(config, sink, claimed)
    if error is None:
        log.info("alert %s (%s of %s) sent to %s", claimed.alert_id, claimed.event,
                 claimed.job_id, claimed.sink)  # fmt: skip
        return alert_store.record_attempt(claimed, error=None, retry_in=None)
    retry_in = None
    if claimed.attempts < config.alerting.max_attempts:
        retry_in = min(RETRY_BASE * 2 ** max(claimed.attempts - 1, 0), RETRY_CAP)
    return alert_store.record_attempt(claimed, error=error, retry_in=retry_in)


def _warn_undelivered(alert: AlertRecord) -> None:
    later = (
        f"next try at {_iso(alert.next_attempt_at)}"
        if alert.next_attempt_at is not None
        else "giving up"
    )
    log.warning(
        "alert %s (%s of %s) to %s not delivered after %s attempt(s): %s; %s",
        alert.alert_id, alert.event, alert.job_id, alert.sink, alert.attempts,
        alert.last_error, later,
    )  # fmt: skip


def _hold(sink: Sink) -> timedelta:
    """How long a process holds an alert it is delivering before others may take it over."""
    return sink.timeout * IMMEDIATE_TRIES + timedelta(seconds=30)


# -------------------------------------------------------------------------------- delivery


def _send(config: ProjectConfig, sink: Sink, alert: AlertRecord) -> str | None:
    """Deliver once; None when the sink took it, else a scrubbed one-line error."""
    body = _body(alert)
    try:
        if isinstance(sink, WebhookSink):
            _post(sink, body)
        elif isinstance(sink, EmailSink):
            _mail(config, sink, body)
        else:
            _run_command(config, sink, body)
    except DeliveryError as exc:
        return _masked(sink, str(exc))
    except Exception as exc:
        return _masked(sink, f"{type(exc).__name__}: {exc}")
    return None


def _body(alert: AlertRecord) -> dict[str, Any]:
    """The alert as JSON (what a ``json`` webhook and a command get)."""
    payload = dict(alert.payload or {})
    payload.setdefault("event", alert.event)
    payload.setdefault("job_id", alert.job_id)
    payload.setdefault("message", alert.message)
    payload.setdefault("title", f"[highmark] {alert.job_id}: {alert.event}")
    return {**payload, "alert_id": alert.alert_id, "raised_at": _jsonable(alert.created_at)}


def _post(sink: WebhookSink, body: dict[str, Any]) -> None:
    timeout = sink.timeout.total_seconds()
    try:
        response = httpx.post(
            sink.url, json=_webhook_body(sink.format, body), headers=sink.headers, timeout=timeout
        )
    except httpx.TimeoutException:
        raise DeliveryError(f"no answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    if response.is_success:
        return
    detail = one_line(response.text)[:200] if response.text.strip() else ""
    status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    raise DeliveryError(f"{status}: {detail}" if detail else status)


def _webhook_body(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    title, message = str(body["title"]), str(body["message"])
    facts = [
        ("job", str(body["job_id"])),
        ("event", str(body["event"])),
        *([("run", str(body["run_id"]))] if body.get("run_id") is not None else []),
        ("alert", str(body["alert_id"])),
    ]
    if kind == "slack":
        context = " · ".join(f"{name} {value}" for name, value in facts)
        return {
            "text": message,
            "blocks": [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*{_slack(title)}*\n{_slack(message)}"},
                },
                {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack(context)}]},
            ],
        }
    if kind == "teams":
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": title,
            "themeColor": _COLORS.get(str(body["event"]), "808080"),
            "title": title,
            "text": message,
            "sections": [{"facts": [{"name": name, "value": value} for name, value in facts]}],
        }
    return body


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mail(config: ProjectConfig, sink: EmailSink, body: dict[str, Any]) -> None:
    smtp = sink.smtp
    message = EmailMessage()
    message["Subject"] = str(body["title"])
    message["From"] = sink.sender
    message["To"] = ", ".join(sink.to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="highmark")
    lines = [str(body["message"]), ""]
    for key in ("job_id", "job_name", "event", "run_id", "raised_at", "alert_id", "dedup_key"):
        if body.get(key) is not None:
            lines.append(f"{key + ':':<11}{body[key]}")
    message.set_content("\n".join([*lines, "", "-- ", "highmark", ""]))
    timeout = sink.timeout.total_seconds()
    context = _tls_context(config, smtp) if smtp.ssl or smtp.starttls else None
    client: smtplib.SMTP
    if smtp.ssl:
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
    with client:
        if smtp.starttls and not smtp.ssl:
            client.starttls(context=context)  # refuses to go on in clear if the server can't
        if smtp.user:
            client.login(smtp.user, smtp.password or "")
        client.send_message(message)


def _tls_context(config: ProjectConfig, smtp: SmtpSettings) -> ssl.SSLContext:
    ca_file = smtp.ca_file
    if ca_file is not None and not ca_file.is_absolute():
        ca_file = config.base_dir / ca_file
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not smtp.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _run_command(config: ProjectConfig, sink: CommandSink, body: dict[str, Any]) -> None:
    timeout = sink.timeout.total_seconds()
    env = {
        **os.environ,
        "HIGHMARK_ALERT_EVENT": str(body["event"]),
        "HIGHMARK_ALERT_JOB_ID": str(body["job_id"]),
    }
    process = subprocess.Popen(
        sink.command,
        shell=isinstance(sink.command, str),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=config.base_dir,
        env=env,
        start_new_session=True,  # on a timeout, its whole process group goes
    )
    try:
        out, err = process.communicate(json.dumps(body).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise DeliveryError(f"no exit within {timeout:g}s (killed)") from None
    if process.returncode == 0:
        return
    said = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
    last = said.splitlines()[-1].strip()[:200] if said else ""
    status = (
        f"killed by signal {-process.returncode}"
        if process.returncode < 0
        else f"exit status {process.returncode}"
    )
    raise DeliveryError(f"{status}: {last}" if last else status)


# -------------------------------------------------------------------------------- secrets


def _register_sink_secrets(config: ProjectConfig) -> None:
    """Also mask a webhook URL in the normalised form httpx quotes it in."""
    for sink in config.alerts:
        if isinstance(sink, WebhookSink):
            with contextlib.suppress(httpx.InvalidURL):
                register_secret(str(httpx.URL(sink.url)))


def _masked(sink: Sink, text: str) -> str:
    """A delivery error as it may be kept and shown: one line, without the sink's secrets."""
    forms: set[str] = set()
    if isinstance(sink, WebhookSink):
        forms.add(sink.url)
        forms.update(value for value in sink.headers.values() if value)
        try:
            url = httpx.URL(sink.url)
            forms.add(str(url))
            target = url.raw_path.decode("ascii", errors="replace")
            if len(target) > 1:  # the path (and query) carries an incoming webhook's token
                forms.add(target)
        except httpx.InvalidURL:
            pass
    elif isinstance(sink, EmailSink) and sink.smtp.password:
        forms.add(sink.smtp.password)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return _clip(one_line(scrub(text)))


def _describe(exc: BaseException) -> str:
    return one_line(scrub(f"{type(exc).__name__}: {exc}"))


# -------------------------------------------------------------------------------- formatting


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "…"


def _iso(value: datetime) -> str:
    return str(_jsonable(value))


def _human(delta: timedelta) -> str:
    """``3d 4h``, ``2h 5m``, ``7m 30s``, ``45s``."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in units if n][:2]
    return " ".join(shown) or "0s"
