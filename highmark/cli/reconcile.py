"""`highmark reconcile`: compare a job's source and target, and repair what differs."""

from __future__ import annotations

import sys

import click

from highmark.cli.base import EXIT_RUN_FAILED, Context, cli, echo_json, handles_errors


@cli.command()
@click.argument("job_id")
@click.option(
    "--repair",
    is_flag=True,
    help="Fix what differs (a run of its own in etl_job_runs; the watermark stays).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
@handles_errors
def reconcile(ctx: Context, job_id: str, repair: bool, as_json: bool) -> None:
    """Compare JOB_ID's source and target by primary key, with counts and hashes of key ranges
    computed in each database: rows missing from the target, rows it has that the source no
    longer has (hard deletes), rows that differ. Exit 1 when something differs (unrepaired)."""
    result = ctx.project.reconcile(job_id, repair=repair)
    report, run = result.report, result.run
    if as_json:
        echo_json(result.to_json())
    else:
        click.echo(f"{job_id}: {report.summary()}")
        for kind in ("missing", "extra", "different"):
            keys = report.samples[kind]
            if keys:
                more = getattr(report, kind) - len(keys)
                shown = ", ".join(str(k) for k in keys) + (f" and {more} more" if more > 0 else "")
                click.echo(f"  {kind}: {shown}")
        if run is not None:
            click.echo(
                f"repair run {run.run_id}: {run.run_status.value}, {run.rows_written:,} inserted, "
                f"{run.rows_updated:,} updated, {run.rows_deleted:,} deleted; watermark unchanged"
            )
    if run is not None and run.run_status.value != "success":
        if run.error_message and not as_json:
            click.echo(f"highmark: error: {job_id}: {run.error_message}", err=True)
        sys.exit(EXIT_RUN_FAILED)
    if run is None and report.differences:
        sys.exit(EXIT_RUN_FAILED)
