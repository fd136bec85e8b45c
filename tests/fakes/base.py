"""What every fake API server shares: a real HTTP server on 127.0.0.1, a clock the test moves, a
request log, fault injection by request number or path, and hooks that run between requests.

A fake subclasses :class:`FakeServer` and implements :meth:`FakeServer.handle`; a test uses it as
a context manager (or through a fixture) and points highmark at :attr:`FakeServer.url`::

    with FakeGitHub() as github:
        github.fail(status=502, on_request=3)
        github.before(2, lambda: github.touch_pr("acme/api", 7))
        ...
        assert [r.path for r in github.requests] == [...]

Faults and hooks count requests from 1, in the order the server receives them; ``path`` narrows
them to requests whose path starts with it (the count is then among those requests).
"""

from __future__ import annotations

import email.utils
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

DEFAULT_START = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """The fake's "now": starts at a fixed instant and moves only when a test (or a client's
    sleep, wired to :meth:`sleep`) moves it. Thread-safe."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        """A client's sleep that passes fake time instead of real time (``clock.set_sleep``)."""
        self.advance(max(seconds, 0.0))


@dataclass
class LoggedRequest:
    """One request as the fake received it, and the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: datetime
    status: int | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(
            status,
            json.dumps(value).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


@dataclass
class Fault:
    """What to do instead of answering: ``status`` (with ``headers``/``body``), ``reset`` (close
    the connection without an answer), ``truncated`` (a 200 whose JSON body stops half-way),
    ``invalid`` (a 200 whose body is not JSON), ``delay`` (answer normally after ``seconds``).

    ``respond``, when given, builds a ``status`` fault's answer when it fires (so its headers can
    depend on the clock at that moment, e.g. a rate limit's reset time)."""

    kind: str = "status"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0
    on_request: int | None = None  # the nth request (among those matching `path`)
    path: str | None = None
    times: int = 1  # how many matching requests it hits, from `on_request` on (or from now)
    hits: int = 0
    respond: Callable[[LoggedRequest], Response] | None = None


@dataclass
class _Hook:
    nth: int
    path: str | None
    action: Callable[[], object]


class FakeServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 (a free port) that logs, faults and dispatches to
    :meth:`handle`."""

    def __init__(self, *, clock: FakeClock | None = None, latency: float = 0.0) -> None:
        self.clock = clock or FakeClock()
        self.latency = latency  # real seconds added to every answer (benchmarks)
        self.requests: list[LoggedRequest] = []
        self.lock = threading.RLock()  # held while a request is handled: tests may mutate safely
        self._faults: list[Fault] = []
        self._hooks: list[_Hook] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.in_flight = 0  # requests received and not yet answered (this one included)
        self.peak_in_flight = 0  # the most ever in flight at once
        self._flight_lock = threading.Lock()

    # ------------------------------------------------------------------ life

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm the body waits for
            # the client's delayed ACK (~40 ms per answer on a kept-alive connection).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def date_time_string(self, timestamp: float | None = None) -> str:
                # The Date header tells the fake's time, as a real server tells its own.
                return email.utils.format_datetime(fake.clock.now(), usegmt=True)

            def _serve(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: stop() waits up to one interval for the loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------------ test controls

    def fail(
        self,
        kind: str = "status",
        *,
        status: int = 500,
        on_request: int | None = None,
        path: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        seconds: float = 0.0,
        respond: Callable[[LoggedRequest], Response] | None = None,
    ) -> Fault:
        """Inject a fault (see :class:`Fault`); ``on_request=None`` hits the next matching one."""
        fault = Fault(kind, status, headers or {}, body, seconds, on_request, path, times)
        fault.respond = respond
        if on_request is None:
            fault.on_request = self.count(path) + 1
        with self.lock:
            self._faults.append(fault)
        return fault

    def before(self, nth: int, action: Callable[[], object], *, path: str | None = None) -> None:
        """Run ``action`` before the ``nth`` matching request is answered (a change "between
        pages")."""
        with self.lock:
            self._hooks.append(_Hook(nth, path, action))

    def count(self, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for r in self.requests if path is None or r.path.startswith(path))

    def clear_log(self) -> None:
        with self.lock:
            self.requests.clear()
            self._faults.clear()
            self._hooks.clear()

    # ------------------------------------------------------------------ subclass API

    def handle(self, request: LoggedRequest) -> Response:
        """Answer one request (called with :attr:`lock` held)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ plumbing

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        with self._flight_lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            self._dispatch_one(handler)
        finally:
            with self._flight_lock:
                self.in_flight -= 1

    def _dispatch_one(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        request = LoggedRequest(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            raw_query=parts.query,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            at=self.clock.now(),
        )
        with self.lock:
            self.requests.append(request)
            nth_all = len(self.requests)
            for hook in list(self._hooks):
                if self._nth(request, hook.path, nth_all) == hook.nth:
                    self._hooks.remove(hook)
                    hook.action()
            fault = self._fault_for(request, nth_all)
            if fault is None or fault.kind == "delay":
                try:
                    response = self.handle(request)
                except Exception as exc:  # a bug in the fake: say so loudly, as a 500
                    response = Response.json({"fake_error": repr(exc)}, status=500)
            elif fault.respond is not None:
                response = fault.respond(request)
            else:
                response = Response()
            request.status = response.status if fault is None else fault.status
            if fault is not None and fault.respond is not None:
                request.status = response.status
        if self.latency:
            time.sleep(self.latency)
        if fault is not None:
            if fault.kind == "delay":
                time.sleep(fault.seconds)
            elif fault.respond is not None:
                self._send(handler, response)
                return
            else:
                self._act(handler, fault, request)
                return
        self._send(handler, response)

    def _nth(self, request: LoggedRequest, path: str | None, nth_all: int) -> int | None:
        if path is None:
            return nth_all
        if not request.path.startswith(path):
            return None
        return sum(1 for r in self.requests if r.path.startswith(path))

    def _fault_for(self, request: LoggedRequest, nth_all: int) -> Fault | None:
        for fault in self._faults:
            nth = self._nth(request, fault.path, nth_all)
            if nth is None or fault.on_request is None or fault.hits >= fault.times:
                continue
            if nth >= fault.on_request:
                fault.hits += 1
                return fault
        return None

    def _act(self, handler: BaseHTTPRequestHandler, fault: Fault, request: LoggedRequest) -> None:
        if fault.kind == "reset":
            request.status = 0
            # SO_LINGER 0: close with a TCP RST, as a dropped connection looks to a client.
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.connection.close()
            handler.close_connection = True
            return
        if fault.kind == "truncated":
            request.status = 200
            body = b'{"data": {"items": [{"id": 1}, {"id"'
            self._send(handler, Response(200, body, {"Content-Type": "application/json"}))
            return
        if fault.kind == "invalid":
            request.status = 200
            body = b"<html><body>upstream error</body></html>"
            self._send(handler, Response(200, body, {"Content-Type": "application/json"}))
            return
        body = fault.body
        if isinstance(body, dict | list):
            response = Response.json(body, fault.status, fault.headers)
        else:
            raw = body.encode() if isinstance(body, str) else (body or b"")
            response = Response(fault.status, raw, dict(fault.headers))
        self._send(handler, response)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, response: Response) -> None:
        try:
            handler.send_response(response.status)
            for name, value in response.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(response.body)))
            handler.end_headers()
            handler.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            pass
