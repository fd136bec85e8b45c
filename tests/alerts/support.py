"""Real receivers for alerts: an HTTP server in a thread, an SMTP server (aiosmtpd), a project
with sinks, and a job that fails (its source table dropped) and recovers (the table recreated)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import Engine, select, text, update

from highmark import Project
from highmark.store.tables import etl_alerts, etl_job_runs
from tests.helpers import create_orders, insert_orders, order, orders_table

JOB = "orders_sync"
OTHER = "customers_sync"
# An incoming-webhook URL carries its token in the path: it must never show anywhere.
TOKEN = "T0KEN-b7f3c9e1d2a4"


def full_job(table: str = "orders", target: str = "orders_copy", **spec: Any) -> dict[str, Any]:
    return {
        "load_type": "full",
        "source": {"connection": "db", "table": table},
        "target": {"connection": "db", "table": target},
        "primary_key": ["id"],
        **spec,
    }


def write_project(
    path: Path,
    url: str,
    *,
    alerts: list[dict[str, Any]],
    jobs: dict[str, dict[str, Any]] | None = None,
    alerting: dict[str, Any] | None = None,
) -> Path:
    """``highmark.yml`` with one database as control, source and target, and the given sinks."""
    document: dict[str, Any] = {
        "control": url,
        "connections": {"db": url},
        "jobs": jobs or {JOB: full_job()},
        "alerts": alerts,
    }
    if alerting:
        document["alerting"] = alerting
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


class Source:
    """The ``orders`` table a job reads: drop it to make the job fail, create it to recover."""

    def __init__(self, engine: Engine, name: str = "orders") -> None:
        self.engine = engine
        self.name = name
        self.create()

    def create(self) -> None:
        table = create_orders(self.engine, self.name)
        insert_orders(self.engine, table, [order(i) for i in range(1, 4)])

    def drop(self) -> None:
        orders_table(self.name).drop(self.engine)


def alert_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(etl_alerts).order_by(etl_alerts.c.alert_id)).mappings().all()
    return [dict(row) for row in rows]


def age_runs(engine: Engine, job_id: str, by_seconds: int) -> None:
    """Make a job's runs (and its watermark) look ``by_seconds`` older, in the database's terms."""
    shift = {
        "postgresql": f"- interval '{by_seconds} seconds'",
        "mysql": f"- INTERVAL {by_seconds} SECOND",
    }
    with engine.begin() as conn:
        for table, columns in (
            ("etl_job_runs", ("started_at", "finished_at", "heartbeat_at")),
            ("etl_watermarks", ("last_updated_at",)),
            ("etl_jobs", ("created_at",)),
        ):
            if engine.dialect.name == "sqlite":
                sets = ", ".join(
                    f"{c} = strftime('%Y-%m-%d %H:%M:%f', {c}, '-{by_seconds} seconds')"
                    for c in columns
                )
            else:
                sets = ", ".join(f"{c} = {c} {shift[engine.dialect.name]}" for c in columns)
            conn.execute(text(f"UPDATE {table} SET {sets} WHERE job_id = :job"), {"job": job_id})


def make_due(engine: Engine) -> None:
    """Let every failed alert be retried now (instead of waiting out its backoff)."""
    with engine.begin() as conn:
        conn.execute(
            update(etl_alerts)
            .where(etl_alerts.c.next_attempt_at.is_not(None))
            .values(next_attempt_at=etl_alerts.c.created_at)
        )


def run_statuses(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [
            r.run_status
            for r in conn.execute(select(etl_job_runs.c.run_status).order_by(etl_job_runs.c.run_id))
        ]


def load(path: Path) -> Project:
    return Project.load(path)


# ------------------------------------------------------------------------------ HTTP receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class WebhookServer:
    """A real HTTP server on 127.0.0.1 that records every POST. ``statuses`` are the answers to
    the next requests (then 200); ``delay`` makes it answer late."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, name: str = "hook") -> str:
        return f"{self.base}/services/{name}/{TOKEN}"

    def bodies(self, path_part: str = "") -> list[Any]:
        with self.lock:
            return [r.body for r in self.received if path_part in r.path]


@contextmanager
def webhook_server() -> Iterator[WebhookServer]:
    holder: list[WebhookServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            state = holder[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if state.delay:
                time.sleep(state.delay)
            with state.lock:
                state.received.append(
                    Received(self.path, dict(self.headers.items()), json.loads(raw or b"null"))
                )
                status = state.statuses.pop(0) if state.statuses else 200
            # An error page that quotes the request's path, as many servers' do.
            answer = b"ok" if status == 200 else f"no service at {self.path}".encode()
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = WebhookServer(server)
    holder.append(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def refused_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}/services/refused/{TOKEN}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ------------------------------------------------------------------------------ SMTP receiver


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    content: str


@dataclass
class MailServer:
    port: int
    mails: list[Mail] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


class _Inbox:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_DATA(self, _server: SMTPServer, _session: Session, envelope: Envelope) -> str:
        content = envelope.content
        text_content = content.decode() if isinstance(content, bytes) else str(content)
        self.server.mails.append(
            Mail(str(envelope.mail_from), list(envelope.rcpt_tos), text_content)
        )
        return "250 OK"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for localhost and 127.0.0.1, made by the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-days", "1", "-keyout", str(key), "-out", str(cert),
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def smtp_server(
    *,
    cert: tuple[Path, Path] | None = None,
    login: tuple[str, str] | None = None,
    implicit_tls: bool = False,
) -> Iterator[MailServer]:
    """A real SMTP server on 127.0.0.1: plain, or requiring STARTTLS (``cert``) or speaking TLS
    from the first byte (``cert`` and ``implicit_tls``: SMTPS), and AUTH (``login``: the one user
    and password it accepts)."""
    state = MailServer(port=free_port())
    options: dict[str, Any] = {}
    if cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert[0]), str(cert[1]))
        if implicit_tls:
            # aiosmtpd counts only STARTTLS as TLS when it decides to offer AUTH; the whole
            # session is encrypted here.
            options.update(ssl_context=context, auth_require_tls=False)
        else:
            options.update(tls_context=context, require_starttls=True)
    if login is not None:

        def authenticator(
            _server: SMTPServer, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                login[0].encode(),
                login[1].encode(),
            )
            if ok:
                state.logins.append(login[0])
            return AuthResult(success=ok, handled=False)  # a failure answers 535

        options.update(auth_required=True, authenticator=authenticator)
    controller = Controller(_Inbox(state), hostname="127.0.0.1", port=state.port, **options)
    controller.start()
    try:
        yield state
    finally:
        controller.stop()
