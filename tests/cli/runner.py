"""Running the real ``highmark`` command as a subprocess, alone or several at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUBPROCESS_TIMEOUT = 120


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def out_lines(self) -> list[str]:
        return self.out.splitlines()

    def __str__(self) -> str:
        command = " ".join(("highmark", *self.args))
        return f"{command} -> {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


def start(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``highmark ARGS`` in ``cwd``, with the test's environment (minus HIGHMARK_PROJECT)
    plus ``env``."""
    environment = {k: v for k, v in os.environ.items() if k != "HIGHMARK_PROJECT"}
    environment.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "highmark", *args],
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(args: Sequence[str], process: subprocess.Popen[str], code: int | None = 0) -> Result:
    """Wait for a started command; check its exit code (unless None) and that it did not crash."""
    try:
        out, err = process.communicate(timeout=SUBPROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    result = Result(tuple(args), process.returncode, out, err)
    if code is not None:
        assert result.code == code, str(result)
    if "--debug" not in result.args:
        # (JSON output may quote a failed run's recorded stack: that is data, not a crash.)
        shown = result.err if "--json" in result.args else result.out + result.err
        assert "Traceback" not in shown, str(result)
    return result


def hm(*args: str, cwd: Path, env: dict[str, str] | None = None, code: int | None = 0) -> Result:
    """Run ``highmark ARGS`` in ``cwd``; check its exit code unless ``code`` is None."""
    return finish(args, start(args, cwd, env), code)


def hm_many(
    commands: Sequence[Sequence[str]],
    cwd: Path,
    env: dict[str, str] | None = None,
    code: int | None = 0,
) -> list[Result]:
    """Run independent commands concurrently (read-only ones, or ones that fail before work)."""
    started = [(args, start(args, cwd, env)) for args in commands]
    results = [finish(args, process, None) for args, process in started]
    for result in results:
        if code is not None:
            assert result.code == code, str(result)
    return results


def assert_error(result: Result, code: int, *fragments: str) -> str:
    """Exactly one stderr line, ``highmark: error: …``, naming ``fragments``; no traceback."""
    assert result.code == code, str(result)
    lines = result.err.splitlines()
    assert len(lines) == 1, str(result)
    assert lines[0].startswith("highmark: error: "), str(result)
    assert "Traceback" not in result.out + result.err, str(result)
    for fragment in fragments:
        assert fragment in lines[0], str(result)
    return lines[0]
