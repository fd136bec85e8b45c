"""Runs started through the API, each in a child process (highmark/api/child.py), so that a run
needs no worker and never blocks the server.

The launcher answers as soon as the child has claimed the run (its row exists, ``running``) or
could not (the job already has a live run). It then supervises its children like a worker does:
a child that died leaves its run ``failed`` (abandoned), a run stuck past its timeout and the grace
period is killed, and when the server stops, running runs get the grace period to finish and are
then asked to stop (they end ``cancelled``, their checkpoints saved).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from highmark.errors import (
    DuplicateRequestError,
    HighmarkError,
    JobAlreadyRunningError,
)
from highmark.models import RunStatus
from highmark.project import Project

log = logging.getLogger("highmark.api")

CLAIM_TIMEOUT_SECONDS = 120.0
REAP_INTERVAL_SECONDS = 1.0


class LaunchError(HighmarkError):
    """A run could not be started (its process failed before it claimed the run)."""


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    job_id: str
    run_id: int
    deadline: float  # monotonic: killed after this (the job's timeout plus the grace period)


class Launcher:
    """Starts runs in child processes and supervises them."""

    def __init__(self, project: Project, *, debug: bool = False) -> None:
        self.project = project
        self.debug = debug
        self.children: dict[int, _Child] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="run-launcher", daemon=True)
        self._thread.start()

    def launch(self, request: dict[str, Any]) -> int:
        """Start a run (``kind``: ``run`` or ``backfill``) and return its run id once claimed.

        Raises JobAlreadyRunningError (the job, or its backfill, is live), DuplicateRequestError
        (its Idempotency-Key started a run meanwhile) or LaunchError."""
        message = {**request, "project": str(self.project.config.path), "debug": self.debug}
        process = subprocess.Popen(
            [sys.executable, "-m", "highmark.api.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C at the server's terminal is the server's
            close_fds=True,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(message).encode())
        process.stdin.close()
        answer = _first_line(process.stdout, CLAIM_TIMEOUT_SECONDS)
        process.stdout.close()
        if "run_id" in answer and "error" not in answer:
            run_id = int(answer["run_id"])
            job = self.project.config.jobs[request["job_id"]]
            grace = self.project.config.worker.grace.total_seconds()
            with self._lock:
                self.children[process.pid] = _Child(
                    process, job.job_id, run_id, time.monotonic() + job.timeout_seconds + grace
                )
            log.info("api: run %s of %s started (pid %s)", run_id, job.job_id, process.pid)
            return run_id
        if process.poll() is None and not answer:
            process.kill()  # it never answered: it will not start a run now
        process.wait()
        error = answer.get("error")
        text = str(
            answer.get("message") or f"the run's process ended with code {process.returncode}"
        )
        if error == "running":
            raise JobAlreadyRunningError(text, run_id=answer.get("run_id"))
        if error == "duplicate":
            raise DuplicateRequestError(text)
        raise LaunchError(text)

    def live(self) -> int:
        with self._lock:
            return len(self.children)

    # ------------------------------------------------------------------ supervision

    def _supervise(self) -> None:
        while not self._stop.wait(REAP_INTERVAL_SECONDS):
            try:
                self._reap()
            except Exception:  # supervision must go on whatever one look failed on
                log.warning("api: supervising runs failed", exc_info=True)

    def _reap(self) -> None:
        now = time.monotonic()
        with self._lock:
            children = list(self.children.items())
        for pid, child in children:
            code = child.process.poll()
            if code is None and now > child.deadline:
                log.warning(
                    "api: run %s of %s ignored its timeout; killing it", child.run_id, child.job_id
                )
                child.process.kill()
                code = child.process.wait()
                self._settle(child, f"timed out and was killed (pid {pid})", kind="timeout")
            elif code is not None:
                self._settle(child, f"abandoned: its process (pid {pid}) ended with code {code}")
            else:
                continue
            with self._lock:
                self.children.pop(pid, None)

    def _settle(self, child: _Child, reason: str, *, kind: str = "abandoned") -> None:
        """A child is gone: a run it left ``running`` is failed (its checkpoint stays)."""
        try:
            run = self.project.store.get_run(child.run_id)
            if run.run_status is RunStatus.RUNNING and run.pid == child.process.pid:
                self.project.store.abandon_run(run, reason, kind=kind)
        except HighmarkError as exc:
            log.warning("api: cannot settle run %s: %s", child.run_id, exc)

    def shutdown(self, grace: float | None = None) -> None:
        """Let running runs finish for ``grace`` (the worker's grace), then ask them to stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        grace = self.project.config.worker.grace.total_seconds() if grace is None else grace
        if self.children:
            log.info("api: stopping; waiting up to %ss for %s run(s)", grace, len(self.children))
        self._wait(grace)
        for child in list(self.children.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGTERM)
        self._wait(max(grace, 10.0))
        for child in list(self.children.values()):
            child.process.kill()
            child.process.wait()
        self._reap()

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.children and time.monotonic() < deadline:
            self._reap()
            if self.children:
                time.sleep(0.1)


def _first_line(stream: Any, timeout: float) -> dict[str, Any]:
    """The child's answer (``{}`` when it ended or timed out without one)."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            return {}
        line = stream.readline()
    finally:
        selector.close()
    try:
        answer = json.loads(line) if line.strip() else {}
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
