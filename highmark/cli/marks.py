"""Commands about where jobs are: watermark and checkpoint."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # imported by the commands that use them: --help and --version stay light
    from highmark.store.watermarks import WatermarkChange

from highmark.cli.base import (
    Context,
    cli,
    cli_actor,
    echo_json,
    handles_errors,
    new_console,
    new_table,
    ts,
)


@cli.group()
def watermark() -> None:
    """Show, set, reset or roll back a job's watermark, and see its history."""


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
        echo_json(marks[0] if len(marks) == 1 else (marks or None))
        return
    if not records:
        click.echo(f"{job_id}: no watermark yet (the next run starts from the beginning)")
        return
    for record in records:
        mark = record.watermark()
        click.echo(
            f"{job_id}: {record.source_table}.{record.watermark_column} "
            f"({record.watermark_type}) = {mark if mark else 'none'}; set by run "
            f"{record.last_successful_run_id or '(by hand)'} at {ts(record.last_updated_at)}"
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
    records = ctx.project.set_watermark(
        job_id, value, source_table=source_table, changed_by=cli_actor()
    )
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
    ctx.project.reset_watermark(job_id, changed_by=cli_actor())
    click.echo(f"{job_id}: watermark reset; the next run starts from the beginning")


@watermark.command("history")
@click.argument("job_id")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print etl_watermark_history rows as JSON.")
@click.pass_obj
@handles_errors
def watermark_history(ctx: Context, job_id: str, limit: int, as_json: bool) -> None:
    """How JOB_ID's watermark moved, newest first: runs' commits, set, reset, rollback."""
    changes = ctx.project.watermark_history(job_id, limit=limit)
    if as_json:
        echo_json([c.to_json() for c in changes])
        return
    if not changes:
        click.echo(f"{job_id}: no watermark change recorded yet")
        return
    table = new_table("changed_at", "source_table", "change", "old", "new", "run_id", "by")
    for c in changes:
        table.add_row(
            ts(c.changed_at), c.source_table, c.change, _mark(c, old=True), _mark(c, old=False),
            "" if c.run_id is None else str(c.run_id), c.changed_by or "",
        )  # fmt: skip
    new_console().print(table)


@watermark.command("rollback")
@click.argument("job_id")
@click.option(
    "--to-run", "run_id", type=int, required=True, help="The successful run whose marks to restore."
)
@click.pass_obj
@handles_errors
def watermark_rollback(ctx: Context, job_id: str, run_id: int) -> None:
    """Put JOB_ID's watermark back to what run RUN_ID left (and clear the checkpoint): the next
    run loads again what came after. Recorded in the history like any change."""
    records = ctx.project.rollback_watermark(job_id, run_id, changed_by=cli_actor())
    if not records:
        click.echo(f"{job_id}: rolled back to run {run_id}: no watermark (from the beginning)")
    for record in records:
        where = f" ({record.source_table})" if len(records) > 1 else ""
        click.echo(f"{job_id}: watermark{where} rolled back to {record.watermark()} (run {run_id})")


def _mark(change: WatermarkChange, *, old: bool) -> str:
    value = change.old_value() if old else change.new_value()
    return "none" if value is None else str(value)


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
        echo_json([{"job_id": j, "checkpoint_data": c} for j, c in found])
        return
    for job_id, data in found:
        click.echo(f"{job_id}\t{json.dumps(data, sort_keys=True)}")


def parse_value(text: str) -> Any:
    from highmark.store.checkpoints import parse_value as parse

    return parse(text)


def _echo_checkpoint(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))
