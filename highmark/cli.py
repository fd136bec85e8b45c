"""The ``highmark`` command: thin, it parses arguments, calls the Python API, prints.

Exit codes: 0 success; 1 a run failed (or a job is already running); 2 bad usage, bad
configuration or an unknown job; 130/143 a run cancelled by SIGINT/SIGTERM.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from highmark import __version__
from highmark.console import ConsoleObserver, setup_logging, summary
from highmark.errors import HighmarkError
from highmark.models import RunRecord, RunStatus, TriggeredBy, to_json_text
from highmark.redact import scrub

if TYPE_CHECKING:  # imported by the commands that use them: --help and --version stay light
    from highmark.project import Project
    from highmark.run import CancelToken

F = TypeVar("F", bound=Callable[..., Any])

EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Context:
    def __init__(self, project_path: str | None, debug: bool) -> None:
        self.project_path = project_path
        self.debug = debug
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        if self._project is None:
            from highmark.project import Project

            self._project = Project.load(self.project_path)
        return self._project


def _fail(message: str, code: int) -> None:
    click.echo(f"highmark: error: {scrub(message)}", err=True)
    sys.exit(code)


def handles_errors(func: F) -> F:
    """Turn highmark errors into one line on stderr and an exit code (--debug: the traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx: Context = click.get_current_context().obj
        try:
            return func(*args, **kwargs)
        except HighmarkError as exc:
            if ctx.debug:
                click.echo(scrub(traceback.format_exc()), err=True)
            _fail(str(exc), exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, SystemExit):
            raise
        except Exception as exc:
            if ctx.debug:
                click.echo(scrub(traceback.format_exc()), err=True)
            _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", 1)

    return wrapper  # type: ignore[return-value]


def _echo_json(value: Any) -> None:
    click.echo(to_json_text(value))


def _table(*headers: str) -> Any:
    from rich.table import Table  # rich is imported only by commands that draw tables

    return Table(*headers)


def _console() -> Any:
    from rich.console import Console

    # Off a terminal (pipes, CI logs) tables keep their full width instead of folding at 80.
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project_path",
    envvar="HIGHMARK_PROJECT",
    metavar="PATH",
    help="The project file (default: ./highmark.yml, or $HIGHMARK_PROJECT).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(__version__, prog_name="highmark")
@click.pass_context
def cli(ctx: click.Context, project_path: str | None, debug: bool) -> None:
    """highmark: move new and changed rows into your warehouse, nothing lost, nothing twice."""
    ctx.obj = Context(project_path, debug)
    setup_logging(debug=debug, interactive=sys.stderr.isatty())


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
@click.argument("job_id", required=False)
@click.option("--all", "run_all", is_flag=True, help="Run every active job once.")
@click.option(
    "--full-refresh", is_flag=True, help="Reload the whole table (target ends equal to source)."
)
@click.option(
    "--triggered-by",
    type=click.Choice([t.value for t in TriggeredBy]),
    default=TriggeredBy.MANUAL.value,
    show_default=True,
    help="Recorded in etl_job_runs.triggered_by.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the finished run record(s) as JSON.")
@click.pass_obj
@handles_errors
def run(
    ctx: Context,
    job_id: str | None,
    run_all: bool,
    full_refresh: bool,
    triggered_by: str,
    as_json: bool,
) -> None:
    """Run JOB_ID once (or every active job with --all)."""
    if bool(job_id) == run_all:
        raise click.UsageError("name one JOB_ID, or use --all")
    from highmark.run import CancelToken

    project = ctx.project
    job_ids = (
        [j.job_id for j in project.config.jobs.values() if j.is_active] if run_all else [job_id]
    )
    if job_id is not None:
        project.job(job_id)
    cancel = CancelToken()
    records: list[RunRecord] = []
    with _cancel_on_signals(cancel):
        for jid in job_ids:
            assert jid is not None
            observer = ConsoleObserver(interactive=sys.stderr.isatty() and not as_json)
            record = project.run(
                jid,
                full_refresh=full_refresh,
                triggered_by=TriggeredBy(triggered_by),
                observer=observer,
                cancel=cancel,
            )
            records.append(record)
            if not as_json:
                click.echo(summary(record))
            if record.run_status is RunStatus.FAILED and record.error_message:
                click.echo(f"highmark: error: {jid}: {record.error_message}", err=True)
            if record.run_status is RunStatus.CANCELLED:
                break
    if as_json:
        _echo_json([r.to_json() for r in records] if run_all else records[0].to_json())
    if any(r.run_status is RunStatus.CANCELLED for r in records):
        sys.exit(SIGNAL_EXIT.get(signal.Signals(cancel.signal_number or signal.SIGINT), 130))
    if any(r.run_status is not RunStatus.SUCCESS for r in records):
        sys.exit(EXIT_RUN_FAILED)


@contextmanager
def _cancel_on_signals(cancel: CancelToken) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish or roll back the batch, checkpoint, end ``cancelled``."""

    def handler(signum: int, _frame: Any) -> None:
        if cancel.event.is_set():
            raise KeyboardInterrupt  # a second signal: stop now
        name = signal.Signals(signum).name
        cancel.cancel(f"cancelled by {name}", signal_number=signum)

    previous = {s: signal.signal(s, handler) for s in SIGNAL_EXIT}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print etl_jobs rows as JSON.")
@click.pass_obj
@handles_errors
def jobs(ctx: Context, as_json: bool) -> None:
    """List the jobs in etl_jobs, with their next due time and last result (jobs gone from the
    file show as inactive)."""
    rows = ctx.project.store.latest_status(active_only=False)
    if as_json:
        _echo_json([_job_json(job, run) for job, run in rows])
        return
    table = _table(
        "job_id", "job_name", "load_type", "schedule", "active", "next_due_at", "last result",
        "source → target",
    )  # fmt: skip
    for job, run in rows:
        active = "yes" if job.is_active else "no"
        if job.is_active_override is not None:
            active += " (enable/disable)"
        last = "never run" if run is None else f"{run.run_status.value} {_ts(run.started_at)}"
        table.add_row(
            job.job_id,
            job.job_name,
            job.load_type,
            " ".join(x for x in (job.schedule, job.schedule_timezone) if x),
            active,
            _ts(job.next_due_at) if job.is_active else "",
            last,
            f"{job.source_table} → {job.target_table}",
        )
    _console().print(table)


def _job_json(job: Any, run: RunRecord | None) -> dict[str, Any]:
    data: dict[str, Any] = {f: getattr(job, f) for f in job.__dataclass_fields__}
    data["last_run_id"] = run.run_id if run else None
    data["last_run_status"] = run.run_status.value if run else None
    data["last_run_started_at"] = run.started_at if run else None
    return data


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
    with _metrics_server(project, metrics_host, metrics_port):
        result = project.worker(concurrency=concurrency, worker_id=worker_id, once=once).run()
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
@click.argument("job_or_run")
@click.pass_obj
@handles_errors
def cancel(ctx: Context, job_or_run: str) -> None:
    """Ask the running run of a job (JOB_ID or RUN_ID) to stop; it ends cancelled."""
    run = ctx.project.cancel(job_or_run)
    click.echo(
        f"asked run {run.run_id} of {run.job_id} (on {run.host}, pid {run.pid}) to stop; "
        "it ends cancelled after its current batch"
    )


@cli.command()
@click.argument("job_id")
@click.pass_obj
@handles_errors
def enable(ctx: Context, job_id: str) -> None:
    """Make JOB_ID active (overrides the file's is_active until the file changes it)."""
    job = ctx.project.enable(job_id)
    click.echo(f"{job.job_id}: enabled; next due {_ts(job.next_due_at) or 'never (no schedule)'}")


@cli.command()
@click.argument("job_id")
@click.pass_obj
@handles_errors
def disable(ctx: Context, job_id: str) -> None:
    """Make JOB_ID inactive (overrides the file's is_active until the file changes it)."""
    ctx.project.disable(job_id)
    click.echo(f"{job_id}: disabled; workers will not start it")


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
        _echo_json(report.to_json())
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
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
@handles_errors
def status(ctx: Context, as_json: bool) -> None:
    """The latest run of every active job."""
    rows = ctx.project.status()
    out: list[dict[str, Any]] = [
        {
            "job_id": job.job_id,
            "job_name": job.job_name,
            "load_type": job.load_type,
            "run_id": run.run_id if run else None,
            "run_status": run.run_status.value if run else None,
            "started_at": run.started_at if run else None,
            "finished_at": run.finished_at if run else None,
            "rows_written": run.rows_written if run else None,
            "rows_updated": run.rows_updated if run else None,
            "rows_deleted": run.rows_deleted if run else None,
            "error_message": run.error_message if run else None,
        }
        for job, run in rows
    ]
    if as_json:
        _echo_json(out)
        return
    table = _table(
        "job_id",
        "job_name",
        "load_type",
        "run_status",
        "started_at",
        "finished_at",
        "rows_written",
        "error_message",
    )
    for row in out:
        table.add_row(
            row["job_id"], row["job_name"], row["load_type"], row["run_status"] or "never run",
            _ts(row["started_at"]), _ts(row["finished_at"]),
            "" if row["rows_written"] is None else f"{row['rows_written']:,}",
            row["error_message"] or "",
        )  # fmt: skip
    _console().print(table)


def _ts(value: Any) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@cli.command()
@click.argument("job_id", required=False)
@click.option(
    "--status",
    "status_",
    type=click.Choice([s.value for s in RunStatus]),
    help="Only runs in this state.",
)
@click.option("--since", metavar="DURATION", help="Only runs started within, e.g. 24h, 30m, 7d.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print etl_job_runs rows as JSON.")
@click.pass_obj
@handles_errors
def runs(
    ctx: Context,
    job_id: str | None,
    status_: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Runs, newest first (--status failed --since 24h: failures of the last day)."""
    if since is not None:
        from highmark.config import parse_duration

        try:
            parse_duration(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    records = ctx.project.runs(job_id, status=status_, since=since, limit=limit)
    if as_json:
        _echo_json([r.to_json() for r in records])
        return
    table = _table(
        "run_id",
        "job_id",
        "run_status",
        "started_at",
        "secs",
        "read",
        "written",
        "updated",
        "deleted",
        "triggered_by",
        "error_message",
    )
    for r in records:
        table.add_row(
            str(r.run_id), r.job_id, r.run_status.value, _ts(r.started_at),
            "" if r.duration_seconds is None else str(r.duration_seconds),
            f"{r.rows_read:,}", f"{r.rows_written:,}", f"{r.rows_updated:,}", f"{r.rows_deleted:,}",
            r.triggered_by or "", r.error_message or "",
        )  # fmt: skip
    _console().print(table)


@cli.group()
def watermark() -> None:
    """Show, set (backfill) or reset a job's watermark."""


@watermark.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the etl_watermarks row as JSON.")
@click.pass_obj
@handles_errors
def watermark_show(ctx: Context, job_id: str, as_json: bool) -> None:
    """Show JOB_ID's committed watermark (one per source table: repository, project…)."""
    records = ctx.project.watermarks(job_id)
    if as_json:
        marks = [r.to_json() for r in records]
        _echo_json(marks[0] if len(marks) == 1 else (marks or None))
        return
    if not records:
        click.echo(f"{job_id}: no watermark yet (the next run starts from the beginning)")
        return
    for record in records:
        mark = record.watermark()
        click.echo(
            f"{job_id}: {record.source_table}.{record.watermark_column} "
            f"({record.watermark_type}) = {mark if mark else 'none'}; set by run "
            f"{record.last_successful_run_id or '(by hand)'} at {_ts(record.last_updated_at)}"
        )


@watermark.command("set")
@click.argument("job_id")
@click.argument("value")
@click.option(
    "--source-table", help="Only this mark of a job that keeps several (a repository, a project)."
)
@click.pass_obj
@handles_errors
def watermark_set(ctx: Context, job_id: str, value: str, source_table: str | None) -> None:
    """Set JOB_ID's watermark to VALUE (a timestamp, TIMESTAMP/ID, or an integer)."""
    records = ctx.project.set_watermark(job_id, value, source_table=source_table)
    changed = [r for r in records if source_table in (None, r.source_table)]
    for record in changed:
        where = f" ({record.source_table})" if len(records) > 1 else ""
        click.echo(f"{job_id}: watermark{where} set to {record.watermark()}")


@watermark.command("reset")
@click.argument("job_id")
@click.pass_obj
@handles_errors
def watermark_reset(ctx: Context, job_id: str) -> None:
    """Forget JOB_ID's watermark and checkpoint: the next run reads from the beginning."""
    ctx.project.reset_watermark(job_id)
    click.echo(f"{job_id}: watermark reset; the next run starts from the beginning")


@cli.group()
def checkpoint() -> None:
    """Show or reset a job's checkpoint_data."""


@checkpoint.command("show")
@click.argument("job_id")
@click.pass_obj
@handles_errors
def checkpoint_show(ctx: Context, job_id: str) -> None:
    """Pretty-print JOB_ID's checkpoint_data (null when it has none)."""
    click.echo(json.dumps(ctx.project.checkpoint(job_id), indent=2, sort_keys=True))


@checkpoint.command("reset")
@click.argument("job_id")
@click.pass_obj
@handles_errors
def checkpoint_reset(ctx: Context, job_id: str) -> None:
    """Clear JOB_ID's checkpoint_data (an interrupted run is not resumed) and its pending
    retries."""
    ctx.project.reset_checkpoint(job_id)
    click.echo(f"{job_id}: checkpoint cleared")


@checkpoint.command("set")
@click.argument("job_id")
@click.argument("key")
@click.argument("value")
@click.pass_obj
@handles_errors
def checkpoint_set(ctx: Context, job_id: str, key: str, value: str) -> None:
    """Set KEY (a path such as a.b) to VALUE (JSON: 5, true, "x", [1]; else a string)."""
    _echo_checkpoint(ctx.project.set_checkpoint(job_id, key, parse_value(value)))


@checkpoint.command("append")
@click.argument("job_id")
@click.argument("key")
@click.argument("value")
@click.pass_obj
@handles_errors
def checkpoint_append(ctx: Context, job_id: str, key: str, value: str) -> None:
    """Append VALUE to the array at KEY (created when missing)."""
    _echo_checkpoint(ctx.project.append_checkpoint(job_id, key, parse_value(value)))


@checkpoint.command("incr")
@click.argument("job_id")
@click.argument("key")
@click.argument("amount", required=False, default="1")
@click.pass_obj
@handles_errors
def checkpoint_incr(ctx: Context, job_id: str, key: str, amount: str) -> None:
    """Add AMOUNT (default 1) to the number at KEY (0 when missing)."""
    number = parse_value(amount)
    if not isinstance(number, int | float) or isinstance(number, bool):
        raise click.BadParameter(f"{amount!r} is not a number", param_hint="AMOUNT")
    _echo_checkpoint(ctx.project.incr_checkpoint(job_id, key, number))


@checkpoint.command("find")
@click.argument("expression")
@click.option("--json", "as_json", is_flag=True, help="Print job ids and checkpoints as JSON.")
@click.pass_obj
@handles_errors
def checkpoint_find(ctx: Context, expression: str, as_json: bool) -> None:
    """Jobs whose checkpoint matches EXPRESSION: 'recovery_mode=true', 'batch_number>5',
    'repositories_processed?repo1' (operators = != > >= < <= ?)."""
    found = ctx.project.find_checkpoints(expression)
    if as_json:
        _echo_json([{"job_id": j, "checkpoint_data": c} for j, c in found])
        return
    for job_id, data in found:
        click.echo(f"{job_id}\t{json.dumps(data, sort_keys=True)}")


def parse_value(text: str) -> Any:
    from highmark.store.checkpoints import parse_value as parse

    return parse(text)


def _echo_checkpoint(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


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
        _echo_json([{**f.__dict__, "level": f.level.value} for f in findings])
    else:
        table = _table("job_id", "check", "result", "detail", "fix")
        for f in findings:
            table.add_row(f.job_id, f.check, f.level.value, f.detail, f.fix)
        _console().print(table)
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
        _echo_json([r.to_json() for r in records])
        return
    table = _table(
        "alert_id", "created_at", "job_id", "event", "run_id", "sink", "status", "attempts",
        "sent_at / next try", "message", "last_error",
    )  # fmt: skip
    for r in records:
        when = _ts(r.sent_at) if r.status == "sent" else _ts(r.next_attempt_at)
        if r.status == "failed" and r.next_attempt_at is None:
            when = "gave up"
        table.add_row(
            str(r.alert_id), _ts(r.created_at), r.job_id, r.event,
            "" if r.run_id is None else str(r.run_id), r.sink, r.status, str(r.attempts),
            when, r.message, r.last_error or "",
        )  # fmt: skip
    _console().print(table)


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
        _echo_json({"raised": [r.to_json() for r in result.raised], "delivered": result.delivered})
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


def main() -> None:
    """Run the command; a usage error, like every other error, is one line on stderr."""
    try:
        code = cli.main(prog_name="highmark", standalone_mode=False)
    except click.ClickException as exc:
        message = exc.format_message()
        if "\n" in message.strip():  # a group named without its subcommand: its help
            exc.show()
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, click.UsageError) and ctx is not None:
            message += f" (see '{ctx.command_path} --help')"
        _fail(message, exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        # A second Ctrl-C during a run stops at once; the run's row is abandoned and resumed later.
        click.echo("highmark: interrupted", err=True)
        sys.exit(SIGNAL_EXIT[signal.SIGINT])
    sys.exit(code if isinstance(code, int) else 0)
