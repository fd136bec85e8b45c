"""What every ``highmark`` command shares: the group, its context, errors as one line, output.

Exit codes: 0 success; 1 a run failed (or a job is already running); 2 bad usage, bad
configuration or an unknown job; 130/143 a run cancelled by SIGINT/SIGTERM.
"""

from __future__ import annotations

import functools
import gc
import signal
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from highmark import __version__
from highmark.console import setup_logging
from highmark.errors import HighmarkError
from highmark.models import to_json_text
from highmark.redact import scrub

if TYPE_CHECKING:  # imported by the commands that use them: --help and --version stay light
    from highmark.project import Project

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
            settle_garbage_collector()
        return self._project


def settle_garbage_collector() -> None:
    """Keep what exists now out of every later collection (gc.freeze: start-up's modules and
    the project live until exit), and collect the garbage of what comes next (highmark.cli.main
    starts with the collector off)."""
    gc.freeze()
    gc.enable()


def fail(message: str, code: int) -> None:
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
            fail(str(exc), exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, SystemExit):
            raise
        except Exception as exc:
            if ctx.debug:
                click.echo(scrub(traceback.format_exc()), err=True)
            fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", 1)

    return wrapper  # type: ignore[return-value]


def echo_json(value: Any) -> None:
    click.echo(to_json_text(value))


def new_table(*headers: str) -> Any:
    from rich.table import Table  # rich is imported only by commands that draw tables

    return Table(*headers)


def new_console() -> Any:
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


def cli_actor() -> str:
    """Who changes something from the command line, for the watermark history."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (cli)"


def ts(value: Any) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
