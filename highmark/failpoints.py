"""Named places where a test can stop or kill highmark, to prove that crashes lose nothing.

``HIGHMARK_FAILPOINT=NAME[:N][:ACTION]`` acts the N-th time (default: the first) the process
reaches the point NAME. ACTION is ``kill`` (default: SIGKILL itself) or ``pause``: create the file
``$HIGHMARK_FAILPOINT_FILE.reached`` and wait until ``$HIGHMARK_FAILPOINT_FILE`` exists, so a test
can act (start a second run, send a signal, kill a connection) at an exact moment. Nothing happens
when the variable is unset, which is always the case outside tests.

Points: ``mid_batch`` (rows merged or staged, the target transaction not yet committed),
``after_target_commit`` (the batch committed in the target, its checkpoint not yet saved),
``before_log_confirm`` (a CDC batch committed in the target and checkpointed, the source's log
not yet told: the replication slot not advanced), ``during_final_commit`` (the watermark written
inside the finishing transaction, not committed), ``in_purge_batch`` (a purge batch rolled up and
deleted, not committed), ``between_purge_batches`` (a purge batch committed, the next not begun).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

ENV_VAR = "HIGHMARK_FAILPOINT"
FILE_ENV_VAR = "HIGHMARK_FAILPOINT_FILE"
PAUSE_LIMIT_SECONDS = 120
_hits: Counter[str] = Counter()


def reach(name: str) -> None:
    """Act here if the environment asks for it."""
    wanted = os.environ.get(ENV_VAR)
    if not wanted:
        return
    point, *rest = wanted.split(":")
    if point != name:
        return
    nth = int(rest[0]) if rest and rest[0] else 1
    action = rest[1] if len(rest) > 1 else "kill"
    _hits[name] += 1
    if _hits[name] != nth:
        return
    if action == "pause":
        _pause()
    else:
        os.kill(os.getpid(), signal.SIGKILL)


def _pause() -> None:
    release = Path(os.environ[FILE_ENV_VAR])
    Path(f"{release}.reached").write_text(str(os.getpid()))
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
