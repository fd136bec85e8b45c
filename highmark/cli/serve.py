"""``highmark serve`` (the REST API and the dashboard) and ``highmark audit`` (what was done
through them)."""

from __future__ import annotations

import signal

import click

from highmark.cli.base import Context, cli, echo_json, handles_errors, new_console, new_table, ts
from highmark.errors import ConfigError

LOOPBACK = "127.0.0.1"


@cli.command()
@click.option("--host", default=LOOPBACK, show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Run without tokens (everyone is admin); only on 127.0.0.1.",
)
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS.")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
@handles_errors
def serve(
    ctx: Context,
    host: str,
    port: int,
    no_auth: bool,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
) -> None:
    """Serve the REST API (/api/v1, docs at /docs) and the dashboard (/) until Ctrl-C or
    SIGTERM; runs started there run in child processes, with triggered_by api."""
    try:
        import uvicorn

        from highmark.api.app import create_app
    except ImportError as exc:
        raise ConfigError(
            f"highmark serve needs the api extra ({exc.name} is missing): "
            "pip install 'highmark[api]'"
        ) from None
    project = ctx.project
    if not project.config.api.tokens and not no_auth:
        raise ConfigError(
            "no api.tokens in the project file: add tokens (see the README), or run "
            "`highmark serve --no-auth` (127.0.0.1 only)"
        )
    if no_auth and host != LOOPBACK:
        raise ConfigError(f"--no-auth serves on {LOOPBACK} only, not {host}")
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together")
    _quiet_access_log_for_health()
    app = create_app(project, no_auth=no_auth, debug=ctx.debug)
    scheme = "https" if ssl_certfile else "http"
    click.echo(
        f"highmark: serving {project.config.path.name} on {scheme}://{host}:{port} "
        f"(dashboard /, API /api/v1, docs /docs){' without authentication' if no_auth else ''}",
        err=True,
    )
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again to the handler it
    # found: a no-op one makes a requested stop exit 0, as a worker does.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,  # uvicorn's records go through highmark's (scrubbing) handler
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        proxy_headers=False,
        server_header=False,
    )


def _quiet_access_log_for_health() -> None:
    import logging

    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.INFO)


@cli.command()
@click.option("--since", metavar="DURATION", help="Only entries within, e.g. 24h, 7d.")
@click.option("--actor", help="Only what this token (by its name) did.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print etl_audit rows as JSON.")
@click.pass_obj
@handles_errors
def audit(ctx: Context, since: str | None, actor: str | None, limit: int, as_json: bool) -> None:
    """What was done through the REST API and the dashboard, newest first: every admin call
    and login, who made it (the token's name), when, and how it ended."""
    if since is not None:
        from highmark.config import parse_duration

        try:
            parse_duration(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    records = ctx.project.audit(limit=limit, since=since, actor=actor)
    if as_json:
        echo_json([r.to_json() for r in records])
        return
    table = new_table("occurred_at", "actor", "action", "target", "status", "outcome", "client")
    for r in records:
        table.add_row(
            ts(r.occurred_at), f"{r.actor} ({r.scope})" if r.scope else r.actor, r.action,
            r.target or "", "" if r.status_code is None else str(r.status_code),
            r.outcome or "", r.client or "",
        )  # fmt: skip
    new_console().print(table)
