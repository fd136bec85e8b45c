"""The one door to the extractor's clock: UTC, timezone-aware, and the one door to waiting.

Window bounds never come from here (they come from the source database's clock); this clock
stamps run rows, heartbeats and durations. Tests may replace :data:`now` through :func:`set_clock`
and :func:`sleep` through :func:`set_sleep` (a fake clock's ``advance``), so that code that waits
— an API client honouring ``Retry-After`` — can be tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

_clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731
_sleep: Callable[[float], None] = time.sleep


def now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return _clock()


def set_clock(clock: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests); ``None`` restores the system clock."""
    global _clock
    _clock = clock if clock is not None else (lambda: datetime.now(UTC))


def sleep(seconds: float) -> None:
    """Wait ``seconds`` (nothing for zero or less) through the current sleep function."""
    if seconds > 0:
        _sleep(seconds)


def set_sleep(fn: Callable[[float], None] | None) -> None:
    """Replace the sleep function (tests); ``None`` restores :func:`time.sleep`."""
    global _sleep
    _sleep = fn if fn is not None else time.sleep


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
