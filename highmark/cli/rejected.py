"""Commands about bad rows: ``highmark rejected JOB`` lists a job's quarantined rows,
``highmark rejected retry JOB`` loads them again once the target was fixed."""

from __future__ import annotations

import json
from typing import Any

import click

from highmark.cli.base import Context, cli, echo_json, handles_errors, new_console, new_table, ts


class _ListByDefault(click.Group):
    """``rejected JOB`` is ``rejected list JOB``: a first argument that names no subcommand is
    the job whose rows to list."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_ListByDefault)
def rejected() -> None:
    """List a job's quarantined bad rows (rejected JOB), or load them again (rejected retry JOB)."""


@rejected.command("list")
@click.argument("job_id")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the etl_rejected_rows rows as JSON.")
@click.pass_obj
@handles_errors
def rejected_list(ctx: Context, job_id: str, limit: int, as_json: bool) -> None:
    """List JOB_ID's quarantined bad rows (on_bad_rows: quarantine), oldest first."""
    records = ctx.project.rejected(job_id, limit=limit)
    if as_json:
        echo_json([r.to_json() for r in records])
        return
    if not records:
        click.echo(f"{job_id}: no rejected rows")
        return
    table = new_table("id", "run_id", "source_table", "record", "error", "column", "rejected_at")
    for r in records:
        table.add_row(
            str(r.rejected_id),
            "" if r.run_id is None else str(r.run_id),
            r.source_table,
            _compact(r.source_record_id),
            r.error_message,
            r.error_column or r.error_constraint or "",
            ts(r.rejected_at),
        )
    new_console().print(table)


@rejected.command("retry")
@click.argument("job_id")
@click.pass_obj
@handles_errors
def rejected_retry(ctx: Context, job_id: str) -> None:
    """Load JOB_ID's quarantined rows again, after the target was fixed (a SQL job's read afresh
    from the source, an API job's records as kept); those that go in leave the quarantine, those
    refused again stay."""
    outcome = ctx.project.retry_rejected(job_id)
    click.echo(outcome.summary(job_id))
    if outcome.refused:
        raise SystemExit(1)


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
