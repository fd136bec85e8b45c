"""The one door to the extractor's clock: UTC, timezone-aware.

Window bounds never come from here (they come from the source database's clock); this clock
stamps run rows, heartbeats and durations. Tests may replace :data:`now` through :func:`set_clock`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return _clock()


def set_clock(clock: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests); ``None`` restores the system clock."""
    global _clock
    _clock = clock if clock is not None else (lambda: datetime.now(UTC))


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
