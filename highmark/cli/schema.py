"""Commands about target tables' columns: schema history."""

from __future__ import annotations

import click

from highmark.cli.base import Context, cli, echo_json, handles_errors, new_console, new_table, ts


@cli.group()
def schema() -> None:
    """What runs changed in jobs' target tables (columns added, widened, dropped at the source)."""


@schema.command("history")
@click.argument("job_id")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print etl_schema_changes rows as JSON.")
@click.pass_obj
@handles_errors
def schema_history(ctx: Context, job_id: str, limit: int, as_json: bool) -> None:
    """The schema changes of JOB_ID's targets, oldest first: each column added (nullable),
    widened, or no longer read from the source (kept in the target), with the run that did it."""
    changes = ctx.project.schema_history(job_id, limit=limit)
    if as_json:
        echo_json([c.to_json() for c in changes])
        return
    if not changes:
        click.echo(f"{job_id}: no schema change recorded yet")
        return
    table = new_table("applied_at", "run_id", "target", "column", "change", "old type", "new type")
    for c in changes:
        table.add_row(
            ts(c.applied_at), "" if c.run_id is None else str(c.run_id), c.target_table,
            c.column_name, c.change_kind, c.old_type or "", c.new_type or "",
        )  # fmt: skip
    new_console().print(table)
