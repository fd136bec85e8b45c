"""The one door to the extractor's clock: UTC, timezone-aware, and the one door to waiting.

Window bounds never come from here (they come from the source database's clock); this clock
stamps run rows, heartbeats and durations. Tests may replace :data:`now` through :func:`set_clock`
and :func:`sleep` through :func:`set_sleep` (a fake clock's ``advance``), so that code that waits
— an API client honouring ``Retry-After`` — can be tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

_clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731
_sleep: Callable[[float], None] | None = None


def now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return _clock()


def set_clock(clock: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests); ``None`` restores the system clock."""
    global _clock
    _clock = clock if clock is not None else (lambda: datetime.now(UTC))


def sleep(seconds: float, interrupt: threading.Event | None = None) -> None:
    """Wait ``seconds`` (a backoff, a rate limit); return early when ``interrupt`` is set.
    Tests may replace the wait through :func:`set_sleep` (e.g. with a fake clock's advance)."""
    if seconds <= 0:
        return
    if _sleep is not None:
        _sleep(seconds)
    elif interrupt is not None:
        interrupt.wait(seconds)
    else:
        time.sleep(seconds)


def set_sleep(sleeper: Callable[[float], None] | None) -> None:
    """Replace :func:`sleep`'s wait (tests); ``None`` restores real waiting."""
    global _sleep
    _sleep = sleeper


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
