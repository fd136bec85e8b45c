"""The FastAPI application: the ``/api/v1`` routes, the dashboard at ``/``, ``/docs``.

Errors are one line: JSON ``{"detail": …}`` on the API (404 unknown job or run, 409 a live run,
422 a bad value, 503 the control store is away), a page on the dashboard. Every response carries
security headers (a strict Content-Security-Policy: the dashboard loads nothing from elsewhere).
Every admin call and every login is recorded in ``etl_audit`` once its response is known.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from highmark import __version__
from highmark.api.auth import Authenticator
from highmark.api.launcher import Launcher
from highmark.errors import (
    CheckpointError,
    ConfigError,
    DuplicateRequestError,
    HighmarkError,
    JobAlreadyRunningError,
    JobNotFoundError,
    RunNotFoundError,
    StoreError,
)
from highmark.project import Project
from highmark.redact import scrub

log = logging.getLogger("highmark.api")

HERE = Path(__file__).parent
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # (no-referrer would send "Origin: null" on forms)
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "cache-control": "no-store",
}


def create_app(project: Project, *, no_auth: bool = False, debug: bool = False) -> FastAPI:
    """The application for ``project``; ``no_auth``: no tokens, everyone is admin (serve binds
    it to 127.0.0.1 only, and it then answers only requests addressed to a loopback name)."""
    launcher = Launcher(project, debug=debug)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        launcher.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(launcher.shutdown)

    app = FastAPI(
        title="highmark",
        version=__version__,
        summary="The REST API of an ETL control plane: jobs, runs, watermarks, checkpoints.",
        description=(
            "Every `/api/v1` route takes `Authorization: Bearer <token>` (a token of the "
            "`api.tokens` section of highmark.yml): 401 without a valid token, 403 when a "
            "`read` token calls an `admin` route. JSON fields are named like the control "
            "tables' columns; timestamps are ISO 8601 UTC."
        ),
        docs_url=None,  # FastAPI's pages load their scripts from a CDN: /docs is ours (docs.py)
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.project = project
    app.state.auth = Authenticator(project.config.api.tokens, no_auth=no_auth)
    app.state.launcher = launcher
    app.state.no_auth = no_auth

    from highmark.api import dashboard, docs, rejected, routes

    app.include_router(routes.router)
    app.include_router(rejected.router)
    app.include_router(routes.health_router)
    app.include_router(docs.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _add_error_handlers(app)
    dashboard.install(app)
    app.add_middleware(AuditMiddleware, project=project)
    app.add_middleware(GuardMiddleware, no_auth=no_auth)
    return app


# ---------------------------------------------------------------------------- errors


def error_status(exc: HighmarkError) -> int:
    """The HTTP status of a highmark error."""
    if isinstance(exc, JobNotFoundError | RunNotFoundError):
        return 404
    if isinstance(exc, JobAlreadyRunningError | DuplicateRequestError):
        return 409
    if isinstance(exc, ConfigError | CheckpointError):
        return 422
    if isinstance(exc, StoreError):
        return 503
    return 500


def _add_error_handlers(app: FastAPI) -> None:
    from highmark.api import dashboard

    @app.exception_handler(HighmarkError)
    async def highmark_error(request: Request, exc: HighmarkError) -> Response:
        status = error_status(exc)
        message = str(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, message)
        note_outcome(request, message)
        if _is_api(request):
            body: dict[str, Any] = {"detail": message}
            if isinstance(exc, JobAlreadyRunningError) and exc.details.get("run_id"):
                body["run_id"] = exc.details["run_id"]  # the live run
            return JSONResponse(body, status_code=status)
        return dashboard.error_page(request, status, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = scrub(str(exc.detail))
        note_outcome(request, message)
        if _is_api(request) or request.url.path.startswith("/static"):
            return JSONResponse(
                {"detail": message}, status_code=exc.status_code, headers=exc.headers
            )
        return dashboard.error_page(request, exc.status_code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        message = f"internal error: {type(exc).__name__}"
        note_outcome(request, message)
        if _is_api(request):
            return JSONResponse({"detail": message}, status_code=500)
        return dashboard.error_page(request, 500, message)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


# ---------------------------------------------------------------------------- auditing


def audit(request: Request, *, actor: str, scope: str | None, target: str | None) -> None:
    """Have this request recorded in ``etl_audit`` once its response is known."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    request.state.audit = {
        "actor": actor,
        "scope": scope,
        "action": f"{request.method} {path}",
        "target": target,
        "client": request.client.host if request.client else None,
    }


def note_outcome(request: Request, outcome: str) -> None:
    """What the audited request did ("run 12 started", or its error)."""
    request.state.audit_outcome = outcome


class AuditMiddleware:
    """Writes the audit entry a request asked for (see :func:`audit`) with its status code."""

    def __init__(self, app: ASGIApp, project: Project) -> None:
        self.app = app
        self.project = project

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            state: dict[str, Any] = scope.get("state") or {}
            entry = state.get("audit")
            if entry is not None:
                code = status[0] if status else 500
                outcome = state.get("audit_outcome") or ("ok" if code < 400 else "refused")
                await anyio.to_thread.run_sync(self._record, entry, code, outcome)

    def _record(self, entry: dict[str, Any], code: int, outcome: str) -> None:
        from highmark.store.audit import AuditLog

        try:
            AuditLog(self.project.store).record(**entry, status_code=code, outcome=outcome)
        except HighmarkError as exc:
            log.error(
                "cannot record %s by %s in the audit log: %s", entry["action"], entry["actor"], exc
            )


# ---------------------------------------------------------------------------- request guards


class GuardMiddleware:
    """Security headers on every response; unsafe requests from another origin refused; with
    ``--no-auth``, only requests addressed to a loopback name (no DNS rebinding)."""

    def __init__(self, app: ASGIApp, no_auth: bool) -> None:
        self.app = app
        self.no_auth = no_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        refusal = None
        if self.no_auth and _hostname(host) not in LOOPBACK_HOSTS:
            refusal = "this server runs without authentication and answers only on 127.0.0.1"
        origin = headers.get("origin")
        if (
            refusal is None
            and scope["method"] in UNSAFE_METHODS
            and origin
            and urlsplit(origin).netloc != host
        ):
            refusal = "cross-origin requests are refused"
        if refusal is not None:
            response = PlainTextResponse(refusal, status_code=403)
            await response(scope, receive, self._with_headers(send))
            return
        static = str(scope.get("path", "")).startswith("/static/")
        await self.app(scope, receive, self._with_headers(send, static))

    def _with_headers(self, send: Send, static: bool = False) -> Send:
        headers = (
            SECURITY_HEADERS
            if not static
            else {
                **{k: v for k, v in SECURITY_HEADERS.items() if k != "cache-control"},
                "cache-control": "public, max-age=3600",
            }
        )

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.encode(), v.encode())
                    for k, v in headers.items()
                    if k.encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return wrapped


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host.split("]", maxsplit=1)[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host
