"""Operating commands: migrate, worker, purge, metrics, check, alerts, demo."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # imported by the commands that use them: --help and --version stay light
    from highmark.project import Project

from highmark.cli.base import (
    EXIT_RUN_FAILED,
    Context,
    cli,
    echo_json,
    handles_errors,
    new_console,
    new_table,
    ts,
)


@cli.command()
@click.pass_obj
@handles_errors
def migrate(ctx: Context) -> None:
    """Create or upgrade the control tables."""
    from highmark.project import Project

    project = Project.load(ctx.project_path, sync=False, migrate=False)
    before, after = project.migrate()
    project.sync()
    if before == after:
        click.echo(f"control store is up to date (revision {after})")
    else:
        click.echo(f"control store migrated from {before or 'empty'} to revision {after}")


@cli.command()
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    help="Runs at a time (default: worker.concurrency).",
)
@click.option(
    "--once", is_flag=True, help="Start what is due now, wait for it, exit (0: all succeeded)."
)
@click.option("--worker-id", metavar="ID", help="Name in logs and claims (default: host:pid).")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics while working.",
)
@click.option(
    "--metrics-host",
    metavar="HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address for --metrics-port.",
)
@click.pass_obj
@handles_errors
def worker(
    ctx: Context,
    concurrency: int | None,
    once: bool,
    worker_id: str | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run jobs when their cron schedule says, in child processes, until SIGTERM."""
    project = ctx.project
    # Made before the metrics server starts, so that its first answer comes from a worker that
    # is about to take SIGTERM as a clean stop.
    work = project.worker(concurrency=concurrency, worker_id=worker_id, once=once)
    with _metrics_server(project, metrics_host, metrics_port):
        result = work.run()
    if once and not result.all_succeeded:
        sys.exit(EXIT_RUN_FAILED)


@contextmanager
def _metrics_server(project: Project, host: str, port: int | None) -> Iterator[None]:
    if port is None:
        yield
        return
    from highmark.metrics import serve

    server = serve(project.store, project.config, port, host)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
@handles_errors
def purge(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Delete runs, alerts and finished slots older than retention.runs_days (runs rolled up
    into etl_run_summaries first) and summaries older than retention.summary_days."""
    from highmark import retention

    project = ctx.project
    report = retention.purge(project.store, project.config.retention, dry_run=dry_run)
    if as_json:
        echo_json(report.to_json())
        return
    click.echo(retention.report_text(report))


@cli.command()
@click.pass_obj
@handles_errors
def metrics(ctx: Context) -> None:
    """Print Prometheus metrics (text exposition format), computed from the control tables."""
    from highmark.metrics import render

    project = ctx.project
    click.echo(render(project.store, project.config).decode(), nl=False)


@cli.command()
@click.argument("job_id", required=False)
@click.option(
    "--sql", "with_sql", is_flag=True, help="Also print the DDL that would fix each finding."
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_obj
@handles_errors
def check(ctx: Context, job_id: str | None, with_sql: bool, as_json: bool) -> None:
    """Check each job's source against the incremental-loading checklist: primary key, the
    watermark column (NOT NULL, indexed, defaulted, bumped on UPDATE), a unique tiebreaker, soft
    deletes, NULL and future watermarks, a safe upper bound. Exit 1 when a check fails."""
    from highmark.findings import Level

    project = ctx.project
    jobs = [project.job(job_id)] if job_id else list(project.config.jobs.values())
    findings = [f for job in jobs for f in job.check_source(project.config)]
    if as_json:
        echo_json([{**f.__dict__, "level": f.level.value} for f in findings])
    else:
        table = new_table("job_id", "check", "result", "detail", "fix")
        for f in findings:
            table.add_row(f.job_id, f.check, f.level.value, f.detail, f.fix)
        new_console().print(table)
        if with_sql:
            fixes = [f for f in findings if f.sql and f.level is not Level.PASS]
            printed: set[str] = set()
            for f in fixes:
                if f.sql not in printed:  # one fix may answer several findings
                    printed.add(f.sql)
                    click.echo(f"-- {f.job_id}: {f.check}\n{f.sql}")
            if not fixes:
                click.echo("-- nothing to fix")
    if any(f.level is Level.FAIL for f in findings):
        sys.exit(EXIT_RUN_FAILED)


@cli.group()
def alerts() -> None:
    """What alerts were sent and what could not be; raise stale alerts, retry the rest."""


@alerts.command("list")
@click.option("--job", "job_id", metavar="JOB_ID", help="Only this job's alerts.")
@click.option(
    "--status",
    "status_",
    type=click.Choice(["sent", "failed", "pending"]),
    help="Only alerts in this state.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print etl_alerts rows as JSON.")
@click.pass_obj
@handles_errors
def alerts_list(
    ctx: Context, job_id: str | None, status_: str | None, limit: int, as_json: bool
) -> None:
    """Alerts, newest first: one row per alert and sink, sent or not, and why not."""
    from highmark import alerts as alerting

    project = ctx.project
    if job_id is not None:
        project.store.get_job(job_id)
    records = alerting.list_alerts(project.store, limit, job_id=job_id, status=status_)
    if as_json:
        echo_json([r.to_json() for r in records])
        return
    table = new_table(
        "alert_id", "created_at", "job_id", "event", "run_id", "sink", "status", "attempts",
        "sent_at / next try", "message", "last_error",
    )  # fmt: skip
    for r in records:
        when = ts(r.sent_at) if r.status == "sent" else ts(r.next_attempt_at)
        if r.status == "failed" and r.next_attempt_at is None:
            when = "gave up"
        table.add_row(
            str(r.alert_id), ts(r.created_at), r.job_id, r.event,
            "" if r.run_id is None else str(r.run_id), r.sink, r.status, str(r.attempts),
            when, r.message, r.last_error or "",
        )  # fmt: skip
    new_console().print(table)


@alerts.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print what was raised and sent as JSON.")
@click.pass_obj
@handles_errors
def alerts_check(ctx: Context, as_json: bool) -> None:
    """Raise stale alerts (jobs past their freshness) and retry the undelivered alerts that are
    due. Exit 0 even when a sink fails (see `alerts list`)."""
    from highmark import alerts as alerting

    project = ctx.project
    result = alerting.check(project.store, project.config)
    if as_json:
        echo_json({"raised": [r.to_json() for r in result.raised], "delivered": result.delivered})
        return
    if not project.config.alerts:
        click.echo("no alert sinks in the project file (alerts:): nothing to check")
        return
    for r in result.raised:
        outcome = r.status if r.status == "sent" else f"{r.status}: {r.last_error or 'not sent'}"
        click.echo(f"{r.job_id}: {r.event} -> {r.sink}: {outcome}")
    stale = len({r.job_id for r in result.raised})
    click.echo(
        f"{stale} job(s) newly stale; {len(result.raised)} alert(s) raised; "
        f"{result.delivered} earlier alert(s) delivered"
    )


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def demo(directory: Path) -> None:
    """Create a sample SQLite project in DIRECTORY, run its job, change rows, run again."""
    from highmark.demo import run_demo

    run_demo(directory)
