"""Doing harm on purpose: run `highmark` in a child process, stop it at a failpoint, kill it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

WAIT_LIMIT_SECONDS = 60


def highmark_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIGHMARK_")}
    env.update(extra)
    return env


def start(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `highmark --project PROJECT ARGS…` in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "highmark", "--project", str(project), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or highmark_env(),
    )


def run(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `highmark --project PROJECT ARGS…` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "highmark", "--project", str(project), *args],
        capture_output=True,
        text=True,
        env=env or highmark_env(),
        timeout=WAIT_LIMIT_SECONDS * 2,
        check=False,
    )


class Pause:
    """A failpoint that stops the child at a named point until released."""

    def __init__(self, directory: Path, point: str, nth: int = 1) -> None:
        self.file = directory / f"pause-{point}-{nth}"
        self.env = highmark_env(
            HIGHMARK_FAILPOINT=f"{point}:{nth}:pause", HIGHMARK_FAILPOINT_FILE=str(self.file)
        )

    def wait(self, process: subprocess.Popen[str]) -> None:
        """Block until the child reached the point (fail if it ended first)."""
        reached = Path(f"{self.file}.reached")
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        while not reached.exists():
            if process.poll() is not None:
                out, err = process.communicate()
                raise AssertionError(f"the run ended before the failpoint: {out}\n{err}")
            if time.monotonic() > deadline:
                raise AssertionError("the run never reached the failpoint")
            time.sleep(0.02)

    def release(self) -> None:
        self.file.write_text("go")


def kill_env(point: str, nth: int = 1) -> dict[str, str]:
    """Environment that makes the child SIGKILL itself at ``point`` (the nth time)."""
    return highmark_env(HIGHMARK_FAILPOINT=f"{point}:{nth}:kill")
