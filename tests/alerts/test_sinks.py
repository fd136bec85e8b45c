"""Delivering alerts to real receivers: an HTTP server (JSON, Slack, Teams webhooks), an SMTP server
(plain, STARTTLS with AUTH, certificate checks), and programs reading the alert on stdin. Retries,
backoff and giving up; a sink that fails, times out or refuses never fails a run; no webhook URL,
header value or SMTP password is ever stored, logged or sent.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from highmark import RunStatus, alerts
from highmark.store.alerts import AlertStore, NewAlert
from highmark.store.tables import etl_alerts
from tests.alerts.support import (
    JOB,
    TOKEN,
    Source,
    WebhookServer,
    alert_rows,
    load,
    make_due,
    refused_url,
    self_signed_certificate,
    smtp_server,
    webhook_server,
    write_project,
)
from tests.faults.invariants import assert_no_secret

HEADER_SECRET = "hdr-S3cret-4f1a9b"
SMTP_PASSWORD = "smtp-Pa55-w0rd-7c2e"
ALERT_COLUMNS = {c.name for c in etl_alerts.columns}


@pytest.fixture
def hooks() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data.db'}"


@pytest.fixture
def engine(url: str, engine_for: Callable[[str], Engine]) -> Engine:
    return engine_for(url)


def _everything(engine: Engine) -> str:
    return "\n".join(repr(row) for row in alert_rows(engine))


# ------------------------------------------------------------------------------ webhooks


def test_webhook_bodies_json_slack_and_teams(
    tmp_path: Path, url: str, engine: Engine, hooks: WebhookServer
) -> None:
    path = write_project(
        tmp_path / "highmark.yml",
        url,
        alerts=[
            {
                "type": "webhook",
                "url": hooks.url("json"),
                "headers": {"Authorization": f"Bearer {HEADER_SECRET}"},
            },
            {"type": "webhook", "url": hooks.url("slack"), "format": "slack"},
            {"type": "webhook", "url": hooks.url("teams"), "format": "teams"},
        ],
    )
    project = load(path)  # the source table does not exist yet: the job fails
    failed = project.run(JOB)
    assert failed.run_status is RunStatus.FAILED

    [body] = hooks.bodies("/json/")
    assert body["event"] == "failed"
    assert body["job_id"] == JOB
    assert body["run_id"] == failed.run_id
    assert body["error_message"] == failed.error_message
    assert body["message"] == f"{JOB} failed (run {failed.run_id}): {failed.error_message}"
    assert body["dedup_key"] == f"failed:{JOB}:{failed.run_id}"
    assert body["failures"] == 1
    assert isinstance(body["alert_id"], int)
    assert body["raised_at"].endswith("Z")
    [json_request] = [r for r in hooks.received if "/json/" in r.path]
    assert json_request.headers["Authorization"] == f"Bearer {HEADER_SECRET}"
    assert json_request.headers["Content-Type"] == "application/json"

    [slack] = hooks.bodies("/slack/")
    assert slack["text"] == body["message"]
    section, context = slack["blocks"]
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].startswith(f"*[highmark] {JOB}: run failed*\n{JOB} failed")
    assert context["type"] == "context"
    assert f"run {failed.run_id}" in context["elements"][0]["text"]

    [teams] = hooks.bodies("/teams/")
    assert teams["@type"] == "MessageCard"
    assert teams["@context"] == "https://schema.org/extensions"
    assert teams["summary"] == teams["title"] == f"[highmark] {JOB}: run failed"
    assert teams["themeColor"] == "D7263D"
    assert teams["text"] == body["message"]
    facts = {f["name"]: f["value"] for f in teams["sections"][0]["facts"]}
    assert facts["job"] == JOB and facts["run"] == str(failed.run_id)

    Source(engine)
    recovered = project.run(JOB)
    assert recovered.run_status is RunStatus.SUCCESS, recovered.error_message
    assert [b["event"] for b in hooks.bodies("/json/")] == ["failed", "recovered"]
    assert hooks.bodies("/teams/")[-1]["themeColor"] == "2EB67D"
    assert hooks.bodies("/slack/")[-1]["text"].startswith(f"{JOB} recovered: run ")

    rows = alert_rows(engine)
    assert len(rows) == 6
    assert {r["status"] for r in rows} == {"sent"}
    assert all(r["attempts"] == 1 and r["sent_at"] is not None for r in rows)
    assert len({r["sink"] for r in rows}) == 3  # one host, three sinks: three names
    assert_no_secret([TOKEN, HEADER_SECRET], _everything(engine))


def test_a_500_is_retried_recorded_failed_and_delivered_later(
    tmp_path: Path,
    url: str,
    engine: Engine,
    hooks: WebhookServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write_project(
        tmp_path / "highmark.yml", url, alerts=[{"type": "webhook", "url": hooks.url()}]
    )
    project = load(path)
    hooks.statuses = [500, 500, 500]  # and the error page quotes the URL's path (the token)

    started = time.monotonic()
    failed = project.run(JOB)
    assert failed.run_status is RunStatus.FAILED  # the run's outcome, not the sink's
    assert time.monotonic() - started < 6  # three tries within a few seconds

    assert len(hooks.received) == 3
    assert len({json.dumps(b, sort_keys=True) for b in hooks.bodies()}) == 1  # the same alert
    [row] = alert_rows(engine)
    assert row["status"] == "failed"
    assert row["attempts"] == 3
    assert row["last_error"].startswith("HTTP 500 Internal Server Error: no service at ")
    assert row["next_attempt_at"] is not None and row["sent_at"] is None

    assert alerts.deliver_pending(project.store, project.config) == 0  # not due yet
    assert len(hooks.received) == 3
    make_due(engine)
    assert alerts.deliver_pending(project.store, project.config) == 1
    assert len(hooks.received) == 4
    [row] = alert_rows(engine)
    assert (row["status"], row["attempts"]) == ("sent", 4)
    assert row["sent_at"] is not None and row["next_attempt_at"] is None
    make_due(engine)
    assert alerts.deliver_pending(project.store, project.config) == 0  # sent is sent
    assert len(hooks.received) == 4

    [listed] = alerts.list_alerts(project.store, 10)
    assert listed.status == "sent" and listed.alert_id == row["alert_id"]
    assert set(listed.to_json()) == ALERT_COLUMNS
    assert "not delivered after 3 attempt(s)" in caplog.text
    assert_no_secret([TOKEN, hooks.url()], _everything(engine), caplog.text, repr(listed))


def test_retries_stop_after_max_attempts(
    tmp_path: Path, url: str, engine: Engine, hooks: WebhookServer
) -> None:
    path = write_project(
        tmp_path / "highmark.yml",
        url,
        alerts=[{"type": "webhook", "url": hooks.url()}],
        alerting={"max_attempts": 4},
    )
    project = load(path)
    hooks.statuses = [503] * 10
    project.run(JOB)
    [row] = alert_rows(engine)
    assert (row["status"], row["attempts"]) == ("failed", 3)
    make_due(engine)
    assert alerts.deliver_pending(project.store, project.config) == 0
    [row] = alert_rows(engine)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("failed", 4, None)
    make_due(engine)  # given up: nothing to make due
    assert alerts.deliver_pending(project.store, project.config) == 0
    assert len(hooks.received) == 4
    assert alerts.list_alerts(project.store, 10, status="failed")[0].attempts == 4
    assert alerts.list_alerts(project.store, 10, status="sent") == []


def test_sinks_that_refuse_or_time_out_never_fail_a_run(
    tmp_path: Path, url: str, engine: Engine, hooks: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    with webhook_server() as slow:
        slow.delay = 2.0
        path = write_project(
            tmp_path / "highmark.yml",
            url,
            alerts=[
                {"type": "webhook", "url": refused_url()},
                {"type": "webhook", "url": slow.url("slow"), "timeout": "0.3s"},
                {"type": "webhook", "url": hooks.url("good")},
            ],
        )
        project = load(path)
        started = time.monotonic()
        failed = project.run(JOB)
        elapsed = time.monotonic() - started
        Source(engine)
        recovered = project.run(JOB)

    assert failed.run_status is RunStatus.FAILED
    assert failed.error_message is not None and "orders" in failed.error_message
    assert recovered.run_status is RunStatus.SUCCESS, recovered.error_message
    assert elapsed < 5  # the sinks are tried in parallel, and a slow one only once
    assert [b["event"] for b in hooks.bodies()] == ["failed", "recovered"]
    rows = alert_rows(engine)
    errors = sorted(r["last_error"] for r in rows if r["status"] == "failed")
    assert len(errors) == 4
    assert sum("ConnectError" in e for e in errors) == 2
    assert sum(e == "no answer within 0.3s" for e in errors) == 2
    assert [r["status"] for r in rows].count("sent") == 2
    assert_no_secret([TOKEN], _everything(engine), caplog.text)


# ------------------------------------------------------------------------------ email


def test_email_through_a_plain_smtp_server(tmp_path: Path, url: str, engine: Engine) -> None:
    with smtp_server() as server:
        path = write_project(
            tmp_path / "highmark.yml",
            url,
            alerts=[
                {
                    "type": "email",
                    "to": ["ops@example.com", "oncall@example.com"],
                    "from": "etl@example.com",
                    "smtp": {"host": "127.0.0.1", "port": server.port, "starttls": False},
                }
            ],
        )
        project = load(path)
        failed = project.run(JOB)

    [mail] = server.mails
    assert mail.sender == "etl@example.com"
    assert mail.recipients == ["ops@example.com", "oncall@example.com"]
    assert f"Subject: [highmark] {JOB}: run failed" in mail.content
    assert "To: ops@example.com, oncall@example.com" in mail.content
    assert f"{JOB} failed (run {failed.run_id})" in mail.content
    [row] = alert_rows(engine)
    assert row["status"] == "sent"
    assert row["sink"].startswith("email ops@example.com,oncall@example.com ")


def _mail_sink(name: str, smtp: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {"type": "email", "to": [f"{name}@example.com"], "smtp": {**smtp, **settings}}


@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning")
def test_email_with_starttls_and_auth_never_shows_the_password(
    tmp_path: Path, url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cert = self_signed_certificate(tmp_path)
    smtp: dict[str, Any] = {"host": "127.0.0.1", "user": "highmark", "ca_file": str(cert[0])}
    with smtp_server(cert=cert, login=("highmark", SMTP_PASSWORD)) as server:
        smtp["port"] = server.port
        path = write_project(
            tmp_path / "highmark.yml",
            url,
            alerts=[
                # the right password, the throwaway CA trusted
                _mail_sink("ops", smtp, password=SMTP_PASSWORD),
                # a wrong password
                _mail_sink("wrong", smtp, password="n0t-" + SMTP_PASSWORD),
                # the certificate not trusted
                _mail_sink("untrusted", smtp, password=SMTP_PASSWORD, ca_file=None),
                # ... unless verification is off
                _mail_sink("unverified", smtp, password=SMTP_PASSWORD, ca_file=None, verify=False),
            ],
        )
        project = load(path)
        project.run(JOB)

    assert sorted(r for m in server.mails for r in m.recipients) == [
        "ops@example.com",
        "unverified@example.com",
    ]
    assert server.logins == ["highmark", "highmark"]
    assert all(f"Subject: [highmark] {JOB}: run failed" in m.content for m in server.mails)
    rows = {row["sink"].split()[1]: row for row in alert_rows(engine)}
    assert rows["ops@example.com"]["status"] == "sent"
    assert rows["unverified@example.com"]["status"] == "sent"
    wrong = rows["wrong@example.com"]
    assert (wrong["status"], wrong["attempts"]) == ("failed", 3)
    assert wrong["last_error"].startswith("SMTPAuthenticationError: (535")
    untrusted = rows["untrusted@example.com"]
    assert untrusted["status"] == "failed"
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted["last_error"]
    assert_no_secret(
        [SMTP_PASSWORD],
        _everything(engine),
        caplog.text,
        *(m.content for m in server.mails),
    )


@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_email_over_smtps_checks_the_certificate_and_never_shows_the_password(
    tmp_path: Path, url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """``ssl: true``: TLS from the first byte (port 465's way), the certificate checked."""
    caplog.set_level(logging.DEBUG)
    cert = self_signed_certificate(tmp_path)
    smtp: dict[str, Any] = {"host": "127.0.0.1", "user": "highmark", "ssl": True,
                            "starttls": False, "password": SMTP_PASSWORD}  # fmt: skip
    with smtp_server(cert=cert, login=("highmark", SMTP_PASSWORD), implicit_tls=True) as server:
        smtp["port"] = server.port
        path = write_project(
            tmp_path / "highmark.yml",
            url,
            alerts=[
                _mail_sink("ops", smtp, ca_file=str(cert[0])),
                _mail_sink("untrusted", smtp),  # the throwaway CA not trusted
            ],
        )
        project = load(path)
        project.run(JOB)

    [mail] = server.mails
    assert mail.recipients == ["ops@example.com"]
    assert f"Subject: [highmark] {JOB}: run failed" in mail.content
    assert server.logins == ["highmark"]
    rows = {row["sink"].split()[1]: row for row in alert_rows(engine)}
    assert rows["ops@example.com"]["status"] == "sent"
    assert rows["untrusted@example.com"]["status"] == "failed"
    assert "CERTIFICATE_VERIFY_FAILED" in rows["untrusted@example.com"]["last_error"]
    assert_no_secret([SMTP_PASSWORD], _everything(engine), caplog.text, mail.content)


# ------------------------------------------------------------------------------ commands

RECEIVER = """
import json, os, sys
alert = json.load(sys.stdin)
alert["env_event"] = os.environ["HIGHMARK_ALERT_EVENT"]
with open(sys.argv[1], "a") as out:
    out.write(json.dumps(alert) + "\\n")
if alert["event"] == "recovered" and len(sys.argv) > 2:
    print("pager said no", file=sys.stderr)
    sys.exit(3)
"""


def test_command_sinks_get_the_alert_on_stdin(tmp_path: Path, url: str, engine: Engine) -> None:
    script = tmp_path / "receiver.py"
    script.write_text(RECEIVER)
    as_list, as_shell = tmp_path / "list.jsonl", tmp_path / "shell.jsonl"
    shell = " ".join(shlex.quote(str(a)) for a in (sys.executable, script, as_shell, "fail"))
    path = write_project(
        tmp_path / "highmark.yml",
        url,
        alerts=[
            {"type": "command", "command": [sys.executable, str(script), str(as_list)]},
            {"type": "command", "command": shell},
            {"type": "command", "command": "sleep 5", "timeout": "0.4s", "events": ["failed"]},
        ],
    )  # fmt: skip
    project = load(path)
    started = time.monotonic()
    failed = project.run(JOB)
    assert time.monotonic() - started < 6
    Source(engine)
    project.run(JOB)

    received = [json.loads(line) for line in as_list.read_text().splitlines()]
    assert [(a["event"], a["env_event"]) for a in received] == [
        ("failed", "failed"),
        ("recovered", "recovered"),
    ]
    assert received[0]["run_id"] == failed.run_id
    assert received[0]["job_id"] == JOB
    assert [json.loads(line)["event"] for line in as_shell.read_text().splitlines()] == [
        "failed",
        "recovered",
        "recovered",
        "recovered",
    ]
    rows = alert_rows(engine)
    names = [alerts.sink_id(sink) for sink in project.config.alerts]
    assert names[0].startswith(f"command {sys.executable} ")
    list_rows, shell_rows, slow_rows = ([r for r in rows if r["sink"] == n] for n in names)
    assert [(r["event"], r["status"]) for r in list_rows] == [
        ("failed", "sent"),
        ("recovered", "sent"),
    ]
    assert [(r["event"], r["status"], r["attempts"]) for r in shell_rows] == [
        ("failed", "sent", 1),
        ("recovered", "failed", 3),
    ]
    assert shell_rows[1]["last_error"] == "exit status 3: pager said no"
    [slow] = slow_rows
    assert (slow["status"], slow["attempts"]) == ("failed", 3)
    assert slow["last_error"] == "no exit within 0.4s (killed)"


def test_an_alert_left_pending_by_a_dead_process_is_delivered_later(
    tmp_path: Path, url: str, engine: Engine, hooks: WebhookServer
) -> None:
    path = write_project(
        tmp_path / "highmark.yml", url, alerts=[{"type": "webhook", "url": hooks.url()}]
    )
    project = load(path)
    [sink] = project.config.alerts
    # What a process that died right after raising the alert leaves behind: a pending row.
    new = NewAlert(JOB, "failed", f"failed:{JOB}:1", alerts.sink_id(sink), None, "boom", {})
    left = AlertStore(project.store).raise_alert(new, hold=timedelta(minutes=1))
    assert left is not None and left.status == "pending"
    assert AlertStore(project.store).raise_alert(new, hold=timedelta(minutes=1)) is None
    assert alerts.deliver_pending(project.store, project.config) == 0  # still held by its raiser
    make_due(engine)
    assert alerts.deliver_pending(project.store, project.config) == 1
    [body] = hooks.bodies()
    assert (body["event"], body["message"], body["alert_id"]) == ("failed", "boom", left.alert_id)
    [row] = alert_rows(engine)
    assert (row["status"], row["attempts"]) == ("sent", 1)
