"""The ``highmark`` command: thin, it parses arguments, calls the Python API, prints.

Exit codes: 0 success; 1 a run failed (or a job is already running); 2 bad usage, bad
configuration or an unknown job; 130/143 a run cancelled by SIGINT/SIGTERM.

    base.py        the group, its context, errors as one line, output helpers
    runs.py        run, cancel, runs, status, jobs, enable, disable
    marks.py       watermark (show, set, reset, history, rollback), checkpoint
    backfill.py    backfill
    operations.py  migrate, worker, purge, metrics, check, alerts, demo
    cdc.py         cdc status, cdc drop
    reconcile.py   reconcile
    serve.py       serve (the REST API and dashboard), audit
    schema.py      schema history

A module of commands registers them on :data:`cli` when imported; each imports what it needs
inside its commands, so that ``--help`` and ``--version`` stay light.
"""

from __future__ import annotations

import gc
import signal
import sys

import click

from highmark.cli import (  # noqa: F401  (they register their commands)
    backfill,
    cdc,
    marks,
    operations,
    reconcile,
    rejected,
    runs,
    schema,
    serve,
)
from highmark.cli.base import SIGNAL_EXIT, cli, fail, settle_garbage_collector

__all__ = ["cli", "main"]


def main() -> None:
    """Run the command; a usage error, like every other error, is one line on stderr."""
    # Start-up builds some 75,000 objects that live until exit (modules, SQLAlchemy and pydantic
    # classes, the project): the cyclic garbage collector would walk them again and again while
    # they are imported and once more at exit, a fifth of a short run's CPU. It starts once the
    # project is loaded (settle_garbage_collector), and the exit leaves them to the OS. (The few
    # commands that never load it through the context, such as migrate and demo, are short.)
    gc.disable()
    try:
        _main()
    finally:
        _before_exit()


def _main() -> None:
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
        fail(message, exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        # A second Ctrl-C during a run stops at once; the run's row is abandoned and resumed later.
        click.echo("highmark: interrupted", err=True)
        sys.exit(SIGNAL_EXIT[signal.SIGINT])
    sys.exit(code if isinstance(code, int) else 0)


def _before_exit() -> None:
    if "highmark.db" in sys.modules:  # (not imported by --help and --version)
        from highmark.db import dispose_all

        # Close pooled connections with a goodbye: the frozen ones below are never finalized,
        # and a server logs (MariaDB) or counts a connection dropped without one.
        dispose_all()
    settle_garbage_collector()
