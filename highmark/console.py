"""How a run shows itself: a progress bar on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from highmark.models import Counts, RunRecord
from highmark.redact import ScrubbingFilter, scrub

if TYPE_CHECKING:
    from highmark.config import JobSpec

log = logging.getLogger("highmark")


def setup_logging(*, debug: bool, interactive: bool) -> None:
    """Log to stderr through the secret scrubber; quieter on a terminal (the bar says it all)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ScrubbingFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING if interactive else logging.INFO)
    # SQLAlchemy's debug log prints result rows (source data): never below WARNING.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.INFO if debug else logging.WARNING)


class ConsoleObserver:
    """Draws a live bar (rows, rows/s) on a terminal, or logs one line per batch otherwise."""

    def __init__(self, *, interactive: bool, console: Any = None) -> None:
        self.interactive = interactive
        self.console = console
        self._progress: Any = None
        self._task: Any = None
        self._started = time.monotonic()

    def started(self, job: JobSpec, run_id: int, description: str) -> None:
        self._started = time.monotonic()
        if self.interactive:
            from rich.console import Console  # only a terminal gets a progress bar
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.console = self.console or Console(stderr=True)
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.fields[job]}[/]"),
                TextColumn("{task.completed:,} rows"),
                TextColumn("{task.fields[rate]:,.0f} rows/s"),
                TextColumn("batch {task.fields[batch]}"),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "run", job=job.job_id, rate=0.0, batch=0, detail="", total=None
            )
        else:
            log.info("run %s of %s: %s", run_id, job.job_id, scrub(description))

    def progressed(self, counts: Counts, batch_number: int, detail: str | None = None) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = counts.rows_read / elapsed
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=counts.rows_read,
                rate=rate,
                batch=batch_number,
                detail=scrub(detail or ""),
            )
        else:
            log.info(
                "batch %s: %s rows read (%.0f rows/s), %s inserted, %s updated, %s deleted%s",
                batch_number, counts.rows_read, rate,
                counts.rows_written, counts.rows_updated, counts.rows_deleted,
                f" ({detail})" if detail else "",
            )  # fmt: skip

    def finished(self, run: RunRecord) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def summary(run: RunRecord) -> str:
    """One line that says how a run ended."""
    mark = ""
    if run.watermark_end is not None or run.watermark_end_integer is not None:
        if run.watermark_end is not None:
            mark = run.watermark_end.isoformat().replace("+00:00", "Z")
            if run.watermark_end_integer is not None:
                mark += f" / {run.watermark_end_integer}"
        else:
            mark = str(run.watermark_end_integer)
        mark = f"; watermark {mark}"
    text = (
        f"{run.job_id}: {run.run_status.value} in {run.duration_seconds or 0}s (run {run.run_id}): "
        f"{run.rows_read:,} read, {run.rows_written:,} inserted, {run.rows_updated:,} updated, "
        f"{run.rows_deleted:,} deleted"
        + (f", {run.rows_rejected:,} rejected" if run.rows_rejected else "")
        + mark
    )
    if run.error_message:
        text += f" — {run.error_message}"
    return text
