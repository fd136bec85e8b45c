"""Commands about change data capture: the log each CDC job holds, and removing it."""

from __future__ import annotations

import click

from highmark.cli.base import Context, cli, echo_json, handles_errors, new_console, new_table


def size_text(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


@cli.group()
def cdc() -> None:
    """The log each CDC job reads (slot, binlog): position, lag, and removing it."""


@cdc.command("status")
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
@handles_errors
def cdc_status(ctx: Context, job_id: str | None, as_json: bool) -> None:
    """Each CDC job's position and the bytes of log its source keeps for it (jobs gone from
    the project file included: drop what they left)."""
    states = ctx.project.cdc_status(job_id)
    if as_json:
        echo_json([s.to_json() for s in states])
        return
    table = new_table("job_id", "log", "connection", "position", "lag", "max_lag", "note")
    for s in states:
        note = s.error or (
            "" if s.in_project else f"gone from the file: highmark cdc drop {s.job_id}"
        )
        if s.over_limit:
            note = f"over cdc.max_lag {note}".strip()
        table.add_row(
            s.job_id, s.log, s.connection, s.position or "never ran",
            size_text(s.lag_bytes), size_text(s.max_lag), note,
        )  # fmt: skip
    new_console().print(table)


@cdc.command("drop")
@click.argument("job_id")
@click.pass_obj
@handles_errors
def cdc_drop(ctx: Context, job_id: str) -> None:
    """Remove JOB_ID's replication slot and publication (PostgreSQL) and forget its position:
    the source stops keeping log for it, and its next run takes a new snapshot."""
    dropped = ctx.project.cdc_drop(job_id)
    what = ", ".join(dropped) if dropped else "nothing was held on the source"
    click.echo(f"{job_id}: {what}; position forgotten (the next run takes a new snapshot)")
