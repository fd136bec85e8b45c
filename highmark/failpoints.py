"""Named places where a test can make highmark die, to prove that crashes lose nothing.

``HIGHMARK_FAILPOINT=after_target_commit`` (for example) makes the process kill itself with
SIGKILL the first time it reaches that point; ``name:N`` waits for the N-th time. Nothing happens
when the variable is unset, which is always the case outside tests.

Points: ``mid_batch`` (rows staged, the target transaction not yet committed),
``after_target_commit`` (the batch committed in the target, its checkpoint not yet saved),
``during_final_commit`` (the watermark written inside the finishing transaction, not committed).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV_VAR = "HIGHMARK_FAILPOINT"
_hits: Counter[str] = Counter()


def reach(name: str) -> None:
    """Die here if the environment asks for it."""
    wanted = os.environ.get(ENV_VAR)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
