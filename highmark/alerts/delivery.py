"""Record alerts once per sink and deliver them: webhooks (plain, Slack, Teams), e-mail and
commands, a few tries at once and then with backoff; every error kept or logged is scrubbed of the
sink's secrets."""

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
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import httpx

from highmark.alerts.events import Event, clip, iso
from highmark.config import CommandSink, EmailSink, ProjectConfig, SmtpSettings, WebhookSink
from highmark.errors import one_line
from highmark.models import _jsonable
from highmark.redact import MASK, register_secret, scrub, scrub_json
from highmark.store.alerts import AlertRecord, AlertStatus, AlertStore, NewAlert
from highmark.store.store import ControlStore

log = logging.getLogger(__name__)

Sink = WebhookSink | EmailSink | CommandSink

# A new alert is tried at once, a few times within seconds (the run waits for it) ...
IMMEDIATE_TRIES = 3
IMMEDIATE_PAUSES = (0.5, 1.0)
IMMEDIATE_BUDGET_SECONDS = 5.0
# ... then by deliver_pending(), after 30 s, 1 min, 2 min … (capped), up to alerting.max_attempts.
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)

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


def raise_and_deliver(
    store: ControlStore, config: ProjectConfig, events: Sequence[Event]
) -> list[AlertRecord]:
    """Record each event once per sink that wants it, then deliver the rows this call created
    (sinks in parallel, each sink's alerts in order)."""
    register_sink_secrets(config)
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
                hold=hold(sink),
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
            log.warning("alert %s could not be delivered now: %s", alert.alert_id, describe(exc))
            result = alert
        if result.status != AlertStatus.SENT:
            sink_down = True
            warn_undelivered(result)
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
            current.alert_id, current.attempts, hold=hold(sink), due_only=False
        )
        if claimed is None:
            return current
        current = attempt(alert_store, config, sink, claimed)
        if current.status == AlertStatus.SENT or i + 1 >= tries:
            break
        pause = IMMEDIATE_PAUSES[min(i, len(IMMEDIATE_PAUSES) - 1)]
        if time.monotonic() - started + pause > IMMEDIATE_BUDGET_SECONDS:
            break
        time.sleep(pause)
    return current


def attempt(
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


def warn_undelivered(alert: AlertRecord) -> None:
    later = (
        f"next try at {iso(alert.next_attempt_at)}"
        if alert.next_attempt_at is not None
        else "giving up"
    )
    log.warning(
        "alert %s (%s of %s) to %s not delivered after %s attempt(s): %s; %s",
        alert.alert_id, alert.event, alert.job_id, alert.sink, alert.attempts,
        alert.last_error, later,
    )  # fmt: skip


def hold(sink: Sink) -> timedelta:
    """How long a process holds an alert it is delivering before others may take it over."""
    return sink.timeout * IMMEDIATE_TRIES + timedelta(seconds=30)


# -------------------------------------------------------------------------------- sinks


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


def register_sink_secrets(config: ProjectConfig) -> None:
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
    return clip(one_line(scrub(text)))


def describe(exc: BaseException) -> str:
    return one_line(scrub(f"{type(exc).__name__}: {exc}"))
