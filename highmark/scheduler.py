"""Cron -> due slots, and retry backoff. Pure functions: no database, no clock of their own.

Schedules are standard five-field cron expressions (croniter also takes a sixth, seconds field),
evaluated in UTC or in the job's ``schedule_timezone``. Across daylight-saving changes a job keeps
to the wall clock like classic cron: a time skipped by the spring change runs when the clock jumps
past it; a time repeated by the autumn change runs once, unless the schedule's hour field is a
wildcard (``*``, ``*/2``), which runs by elapsed time and so in both passes of the repeated hour.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

DEFAULT_RETRY_BASE = timedelta(seconds=30)
DEFAULT_RETRY_CAP = timedelta(minutes=30)
# Catching up after downtime looks at most this many missed fire times one by one.
MAX_COUNTED_MISSES = 10_000


@dataclass(frozen=True)
class Slot:
    """A fire time that is due, and how many earlier fire times it stands in for."""

    scheduled_for: datetime
    missed: int


def _zone(name: str | None) -> ZoneInfo:
    return ZoneInfo(name or "UTC")


def _hour_is_wildcard(expression: str) -> bool:
    fields = expression.split()
    return len(fields) >= 2 and fields[1].startswith("*")


def _repeated_wall_time(fire: datetime, zone: ZoneInfo) -> bool:
    """Is ``fire`` the second pass of a wall-clock time repeated by a DST change?"""
    wall = fire.replace(tzinfo=None)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    # (Aware datetimes of one zone compare by wall time: compare in UTC.)
    return first < fire.astimezone(UTC)


def fires_after(expression: str, zone_name: str | None, after: datetime) -> Iterator[datetime]:
    """The fire times strictly after ``after``, in UTC, one by one (the expression is parsed
    once, however many are taken)."""
    from croniter import croniter  # imported when needed: most commands never evaluate cron

    zone = _zone(zone_name)
    skip_repeats = not _hour_is_wildcard(expression)
    it = croniter(expression, after.astimezone(zone))
    while True:
        fire: datetime = it.get_next(datetime)
        if skip_repeats and _repeated_wall_time(fire, zone):
            continue
        yield fire.astimezone(UTC)


def next_fire(expression: str, zone_name: str | None, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, in UTC."""
    return next(fires_after(expression, zone_name, after))


def due_slot(
    expression: str, zone_name: str | None, next_due: datetime, now: datetime
) -> Slot | None:
    """The slot to run now for a job whose next fire time was ``next_due``.

    A worker that was down does not run a job once per missed fire time: it runs the latest one
    that is due, once, and says how many it stands in for (``catchup: false``).
    """
    if next_due > now:
        return None
    latest, missed = next_due, 0
    for following in fires_after(expression, zone_name, next_due):
        if following > now:
            return Slot(scheduled_for=latest, missed=missed)
        if missed >= MAX_COUNTED_MISSES:
            break
        latest, missed = following, missed + 1
    # Very long downtime of a very frequent job: jump straight to the latest fire time.
    from croniter import croniter

    zone = _zone(zone_name)
    prev: datetime = croniter(expression, now.astimezone(zone)).get_prev(datetime)
    return Slot(scheduled_for=prev.astimezone(UTC), missed=missed)


def backoff(
    attempt: int,
    base: timedelta = DEFAULT_RETRY_BASE,
    cap: timedelta = DEFAULT_RETRY_CAP,
    rng: random.Random | None = None,
) -> timedelta:
    """Delay before retry number ``attempt`` (1 = the first retry): exponential, capped, with
    jitter in [50 %, 100 %] of the step so that many failed jobs do not retry in lockstep."""
    step = base
    for _ in range(max(attempt - 1, 0)):  # doubling stops at the cap: no overflow at attempt 100
        if step >= cap:
            break
        step *= 2
    step = min(cap, step)
    jitter = 0.5 + 0.5 * float((rng or random).random())
    return step * jitter
