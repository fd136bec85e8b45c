"""Commands about runs and jobs: run, cancel, runs, status, jobs, enable, disable."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from highmark.console import ConsoleObserver, summary
from highmark.models import RunRecord, RunStatus, TriggeredBy

if TYPE_CHECKING:  # imported by the commands that use them: --help and --version stay light
    from highmark.run import CancelToken

from highmark.cli.base import (
    EXIT_RUN_FAILED,
    SIGNAL_EXIT,
    Context,
    cli,
    echo_json,
    handles_errors,
    new_console,
    new_table,
    ts,
)


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
@click.option(
    "--follow",
    is_flag=True,
    help="Run JOB_ID again as soon as each run ends (CDC: keep applying), until SIGTERM/Ctrl-C.",
)
@click.option(
    "--every",
    metavar="DURATION",
    default="1s",
    show_default=True,
    help="With --follow: at least this long between the starts of two runs.",
)
@click.pass_obj
@handles_errors
def run(
    ctx: Context,
    job_id: str | None,
    run_all: bool,
    full_refresh: bool,
    triggered_by: str,
    as_json: bool,
    follow: bool,
    every: str,
) -> None:
    """Run JOB_ID once (or every active job with --all)."""
    if bool(job_id) == run_all:
        raise click.UsageError("name one JOB_ID, or use --all")
    if follow:
        if run_all or as_json:
            raise click.UsageError("--follow runs one JOB_ID, without --json")
        assert job_id is not None
        _follow(ctx, job_id, full_refresh, TriggeredBy(triggered_by), every)
        return
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
        echo_json([r.to_json() for r in records] if run_all else records[0].to_json())
    if any(r.run_status is RunStatus.CANCELLED for r in records):
        sys.exit(SIGNAL_EXIT.get(signal.Signals(cancel.signal_number or signal.SIGINT), 130))
    if any(r.run_status is not RunStatus.SUCCESS for r in records):
        sys.exit(EXIT_RUN_FAILED)


def _follow(
    ctx: Context, job_id: str, full_refresh: bool, triggered_by: TriggeredBy, every: str
) -> None:
    """Runs of one job back to back (each its own run, its marks committed) until a signal; a
    failed run is followed by the next one after the interval, as a cron schedule would."""
    import time

    from highmark.config import parse_duration
    from highmark.run import CancelToken

    try:
        interval = parse_duration(every).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    project = ctx.project
    project.job(job_id)
    cancel = CancelToken()
    with _cancel_on_signals(cancel):
        while not cancel.event.is_set():
            began = time.monotonic()
            observer = ConsoleObserver(interactive=sys.stderr.isatty())
            record = project.run(
                job_id, full_refresh=full_refresh, triggered_by=triggered_by,
                observer=observer, cancel=cancel,
            )  # fmt: skip
            full_refresh = False
            click.echo(summary(record))
            if record.run_status is RunStatus.FAILED and record.error_message:
                click.echo(f"highmark: error: {job_id}: {record.error_message}", err=True)
            cancel.event.wait(max(0.0, interval - (time.monotonic() - began)))
    sys.exit(SIGNAL_EXIT.get(signal.Signals(cancel.signal_number or signal.SIGINT), 130))


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
        echo_json([_job_json(job, run) for job, run in rows])
        return
    table = new_table(
        "job_id", "job_name", "load_type", "schedule", "active", "next_due_at", "last result",
        "source → target",
    )  # fmt: skip
    for job, run in rows:
        active = "yes" if job.is_active else "no"
        if job.is_active_override is not None:
            active += " (enable/disable)"
        last = "never run" if run is None else f"{run.run_status.value} {ts(run.started_at)}"
        table.add_row(
            job.job_id,
            job.job_name,
            job.load_type,
            " ".join(x for x in (job.schedule, job.schedule_timezone) if x),
            active,
            ts(job.next_due_at) if job.is_active else "",
            last,
            f"{job.source_table} → {job.target_table}",
        )
    new_console().print(table)


def _job_json(job: Any, run: RunRecord | None) -> dict[str, Any]:
    data: dict[str, Any] = {f: getattr(job, f) for f in job.__dataclass_fields__}
    data["last_run_id"] = run.run_id if run else None
    data["last_run_status"] = run.run_status.value if run else None
    data["last_run_started_at"] = run.started_at if run else None
    return data


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
    click.echo(f"{job.job_id}: enabled; next due {ts(job.next_due_at) or 'never (no schedule)'}")


@cli.command()
@click.argument("job_id")
@click.pass_obj
@handles_errors
def disable(ctx: Context, job_id: str) -> None:
    """Make JOB_ID inactive (overrides the file's is_active until the file changes it)."""
    ctx.project.disable(job_id)
    click.echo(f"{job_id}: disabled; workers will not start it")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
@handles_errors
def status(ctx: Context, as_json: bool) -> None:
    """The latest run of every active job."""
    rows = ctx.project.status()
    # CDC jobs: the bytes of log their source keeps for them (asked of each source).
    lags = (
        {s.job_id: s for s in ctx.project.cdc_status()}
        if any(job.load_type == "cdc" for job, _ in rows)
        else {}
    )
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
            "rows_rejected": (run.rows_rejected or 0) if run else None,
            "error_message": run.error_message if run else None,
            **({"cdc_lag_bytes": lags[job.job_id].lag_bytes} if job.job_id in lags else {}),
        }
        for job, run in rows
    ]
    if as_json:
        echo_json(out)
        return
    table = new_table(
        "job_id",
        "job_name",
        "load_type",
        "run_status",
        "started_at",
        "finished_at",
        "rows_written",
        *(["rows_rejected"] if any(r["rows_rejected"] for r in out) else []),
        *(["cdc lag"] if lags else []),
        "error_message",
    )
    rejected_shown = any(r["rows_rejected"] for r in out)
    for row in out:
        lag = lags.get(row["job_id"])
        lag_cell = [] if not lags else ["" if lag is None else _lag_text(lag)]
        rejected_cell = [f"{row['rows_rejected'] or 0:,}"] if rejected_shown else []
        table.add_row(
            row["job_id"], row["job_name"], row["load_type"], row["run_status"] or "never run",
            ts(row["started_at"]), ts(row["finished_at"]),
            "" if row["rows_written"] is None else f"{row['rows_written']:,}",
            *rejected_cell,
            *lag_cell,
            row["error_message"] or "",
        )  # fmt: skip
    new_console().print(table)


def _lag_text(lag: Any) -> str:
    from highmark.cli.cdc import size_text

    return "unknown" if lag.error else size_text(lag.lag_bytes)


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
        echo_json([r.to_json() for r in records])
        return
    table = new_table(
        "run_id",
        "job_id",
        "run_status",
        "started_at",
        "secs",
        "read",
        "written",
        "updated",
        "deleted",
        "rejected",
        "triggered_by",
        "error_message",
    )
    for r in records:
        table.add_row(
            str(r.run_id), r.job_id, r.run_status.value, ts(r.started_at),
            "" if r.duration_seconds is None else str(r.duration_seconds),
            f"{r.rows_read:,}", f"{r.rows_written:,}", f"{r.rows_updated:,}", f"{r.rows_deleted:,}",
            f"{r.rows_rejected or 0:,}",
            r.triggered_by or "", r.error_message or "",
        )  # fmt: skip
    new_console().print(table)
