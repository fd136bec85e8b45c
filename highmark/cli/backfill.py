"""``highmark backfill``: load a past window of an incremental job again, marks untouched."""

from __future__ import annotations

import signal
import sys

import click

from highmark.cli.base import EXIT_RUN_FAILED, SIGNAL_EXIT, Context, cli, echo_json, handles_errors
from highmark.models import RunStatus, TriggeredBy


@cli.command()
@click.argument("job_id")
@click.option("--from", "start", metavar="X", help="Load rows after X (a timestamp or an id).")
@click.option("--to", "end", metavar="Y", help="…up to and including Y.")
@click.option(
    "--resume", is_flag=True, help="Resume the job's unfinished backfill, on its own window."
)
@click.option(
    "--triggered-by",
    type=click.Choice([t.value for t in TriggeredBy]),
    default=TriggeredBy.MANUAL.value,
    show_default=True,
    help="Recorded in etl_job_runs.triggered_by.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the finished run record as JSON.")
@click.pass_obj
@handles_errors
def backfill(
    ctx: Context,
    job_id: str,
    start: str | None,
    end: str | None,
    resume: bool,
    triggered_by: str,
    as_json: bool,
) -> None:
    """Load the window (X, Y] of incremental job JOB_ID again, in a run of its own that does
    not move its watermark (it may run beside the job's regular runs; upserts make overlaps
    harmless). Started again on the same window after a crash, it resumes."""
    if resume and (start or end):
        raise click.UsageError("--resume takes its window from the unfinished backfill")
    if not resume and not (start and end):
        raise click.UsageError("give the window with --from X --to Y (or --resume)")
    from highmark.cli.runs import _cancel_on_signals
    from highmark.console import ConsoleObserver, summary
    from highmark.run import CancelToken

    project = ctx.project
    project.backfill_window(job_id, start, end, resume=resume)  # bad windows fail before work
    cancel = CancelToken()
    with _cancel_on_signals(cancel):
        record = project.backfill(
            job_id,
            start,
            end,
            resume=resume,
            triggered_by=TriggeredBy(triggered_by),
            observer=ConsoleObserver(interactive=sys.stderr.isatty() and not as_json),
            cancel=cancel,
        )
    if as_json:
        echo_json(record.to_json())
    else:
        click.echo(summary(record).replace("; watermark", "; window up to"))
    if record.run_status is RunStatus.FAILED and record.error_message:
        click.echo(f"highmark: error: {job_id}: {record.error_message}", err=True)
    if record.run_status is RunStatus.CANCELLED:
        sys.exit(SIGNAL_EXIT.get(signal.Signals(cancel.signal_number or signal.SIGINT), 130))
    if record.run_status is not RunStatus.SUCCESS:
        sys.exit(EXIT_RUN_FAILED)
