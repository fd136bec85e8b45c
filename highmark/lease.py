"""Liveness of runs: who owns a live run, whether its owner is still there, heartbeats.

A run's row records its host, pid and a heartbeat written from the control database's clock. A
live run is *abandoned* when its process is gone (same host) or its heartbeat is older than the
lease. Abandoned runs are failed by a compare-and-set on their fencing token, so a process that
was only slow finds, at its next write, that it no longer owns its run and stops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from highmark.errors import HighmarkError, LeaseLostError
from highmark.models import Counts, RunRecord
from highmark.store.store import ControlStore, RunHandle

HEARTBEAT_INTERVAL = timedelta(seconds=10)
LEASE = timedelta(seconds=60)

log = logging.getLogger(__name__)


def this_host() -> str:
    return socket.gethostname()


def process_alive(pid: int) -> bool:
    """Is ``pid`` a live (not zombie) process on this host?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def abandonment(run: RunRecord, now: datetime, lease: timedelta = LEASE) -> str | None:
    """Why ``run`` counts as abandoned, or None when its owner may still be working."""
    same_host = run.host == this_host() and run.pid is not None and run.pid != os.getpid()
    if same_host and run.pid is not None and not process_alive(run.pid):
        return f"abandoned: its process (pid {run.pid} on {run.host}) is gone"
    heartbeat = run.heartbeat_at or run.started_at
    if now - heartbeat > lease:
        age = int((now - heartbeat).total_seconds())
        return (
            f"abandoned: no heartbeat from {run.host} pid {run.pid} for {age}s "
            f"(lease {int(lease.total_seconds())}s)"
        )
    return None


class LeaseKeeper:
    """Heartbeats a live run from a background thread while the run works, and passes on a
    request to stop (`highmark cancel`) that it finds on the run's row."""

    def __init__(
        self,
        store: ControlStore,
        handle: RunHandle,
        interval: timedelta = HEARTBEAT_INTERVAL,
        on_cancel_request: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.handle = handle
        self.interval = interval.total_seconds()
        self.on_cancel_request = on_cancel_request
        self.counts: Counts | None = None
        self.lost: LeaseLostError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"heartbeat-{handle.run_id}", daemon=True
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def check(self) -> None:
        """Raise if another process took this run over."""
        if self.lost is not None:
            raise self.lost

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.store.heartbeat(self.handle, self.counts) and self.on_cancel_request:
                    self.on_cancel_request("cancelled by request (highmark cancel)")
            except LeaseLostError as exc:
                self.lost = exc
                return
            except HighmarkError as exc:  # a control store hiccup: the lease decides, try again
                log.warning("heartbeat of run %s failed: %s", self.handle.run_id, exc)
