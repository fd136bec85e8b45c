"""highmark.scheduler: cron fire times in UTC and in a zone (across DST changes), catch-up after
downtime, and retry backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from highmark.scheduler import Slot, backoff, due_slot, next_fire

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def fires(expression: str, zone: str | None, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time in (start, end], in UTC."""
    out, at = [], start
    while True:
        at = next_fire(expression, zone, at)
        if at > end:
            return out
        out.append(at)


# --------------------------------------------------------------------------- next_fire


def test_next_fire_is_strictly_after_and_in_utc() -> None:
    assert next_fire("0 * * * *", None, utc(2024, 5, 1, 10, 0)) == utc(2024, 5, 1, 11, 0)
    assert next_fire("0 * * * *", None, utc(2024, 5, 1, 10, 0, 1)) == utc(2024, 5, 1, 11, 0)
    assert next_fire("30 2 * * *", "UTC", utc(2024, 5, 1, 3)) == utc(2024, 5, 2, 2, 30)
    fire = next_fire("*/15 * * * *", None, utc(2024, 5, 1, 10, 7))
    assert fire == utc(2024, 5, 1, 10, 15)
    assert fire.tzinfo is UTC


def test_next_fire_reads_the_schedule_in_its_zone() -> None:
    # 09:00 in Berlin is 07:00 UTC in summer (CEST) and 08:00 UTC in winter (CET).
    assert next_fire("0 9 * * *", "Europe/Berlin", utc(2024, 7, 1, 12)) == utc(2024, 7, 2, 7)
    assert next_fire("0 9 * * *", "Europe/Berlin", utc(2024, 1, 1, 12)) == utc(2024, 1, 2, 8)
    # An aware `after` in another zone means the same instant.
    after = berlin(2024, 7, 1, 14)  # 12:00 UTC
    assert next_fire("0 9 * * *", "Europe/Berlin", after) == utc(2024, 7, 2, 7)
    assert next_fire("0 9 * * *", "America/New_York", utc(2024, 7, 1, 12)) == utc(2024, 7, 1, 13)


def test_a_seconds_field_fires_every_few_seconds() -> None:
    start = utc(2024, 5, 1, 10, 0, 0)
    assert fires("* * * * * */2", None, start, start + timedelta(seconds=6)) == [
        start + timedelta(seconds=s) for s in (2, 4, 6)
    ]


# --------------------------------------------------------------------------- DST


def test_spring_forward_a_skipped_daily_time_runs_once_when_the_clock_jumps_past_it() -> None:
    """Europe/Berlin, 2024-03-31: 02:00 CET becomes 03:00 CEST; 02:30 does not exist."""
    got = fires("30 2 * * *", "Europe/Berlin", utc(2024, 3, 29, 12), utc(2024, 4, 2, 12))
    assert got == [
        berlin(2024, 3, 30, 2, 30).astimezone(UTC),  # 01:30 UTC
        berlin(2024, 3, 31, 3, 0).astimezone(UTC),  # the change day: at 03:00 CEST, once
        berlin(2024, 4, 1, 2, 30).astimezone(UTC),  # 00:30 UTC
        berlin(2024, 4, 2, 2, 30).astimezone(UTC),
    ]
    assert got[1] == utc(2024, 3, 31, 1, 0)


def test_fall_back_a_daily_time_in_the_repeated_hour_runs_once() -> None:
    """Europe/Berlin, 2024-10-27: 03:00 CEST becomes 02:00 CET; 02:30 happens twice."""
    got = fires("30 2 * * *", "Europe/Berlin", utc(2024, 10, 25, 12), utc(2024, 10, 29, 12))
    assert got == [
        berlin(2024, 10, 26, 2, 30).astimezone(UTC),
        berlin(2024, 10, 27, 2, 30, fold=0).astimezone(UTC),  # the first pass (CEST) only
        berlin(2024, 10, 28, 2, 30).astimezone(UTC),
        berlin(2024, 10, 29, 2, 30).astimezone(UTC),
    ]
    assert got[1] == utc(2024, 10, 27, 0, 30)


def test_fall_back_an_every_30_minutes_job_runs_in_both_passes_of_the_repeated_hour() -> None:
    got = fires("*/30 * * * *", "Europe/Berlin", utc(2024, 10, 26, 23, 45), utc(2024, 10, 27, 2))
    assert got == [
        utc(2024, 10, 27, 0, 0),  # 02:00 CEST
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST
        utc(2024, 10, 27, 1, 0),  # 02:00 CET
        utc(2024, 10, 27, 1, 30),  # 02:30 CET
        utc(2024, 10, 27, 2, 0),  # 03:00 CET
    ]


def test_spring_forward_an_every_30_minutes_job_keeps_elapsed_time() -> None:
    got = fires("*/30 * * * *", "Europe/Berlin", utc(2024, 3, 30, 23, 45), utc(2024, 3, 31, 1, 30))
    assert got == [
        utc(2024, 3, 31, 0, 0),  # 01:00 CET
        utc(2024, 3, 31, 0, 30),  # 01:30 CET
        utc(2024, 3, 31, 1, 0),  # 03:00 CEST: 02:00 and 02:30 do not exist
        utc(2024, 3, 31, 1, 30),
    ]


# --------------------------------------------------------------------------- catch-up


def test_a_slot_is_due_only_once_its_fire_time_has_passed() -> None:
    assert due_slot("0 * * * *", None, utc(2024, 5, 1, 11), utc(2024, 5, 1, 10, 59)) is None
    assert due_slot("0 * * * *", None, utc(2024, 5, 1, 11), utc(2024, 5, 1, 11)) == Slot(
        utc(2024, 5, 1, 11), 0
    )
    assert due_slot("0 * * * *", None, utc(2024, 5, 1, 11), utc(2024, 5, 1, 11, 59)) == Slot(
        utc(2024, 5, 1, 11), 0
    )


def test_after_downtime_the_latest_due_fire_time_stands_in_for_the_missed_ones() -> None:
    slot = due_slot("0 * * * *", None, utc(2024, 5, 1, 10), utc(2024, 5, 1, 15, 20))
    assert slot == Slot(scheduled_for=utc(2024, 5, 1, 15), missed=5)
    # A weekday schedule counts only its own fire times: Friday 09:00 to Tuesday 09:30.
    weekdays = due_slot("0 9 * * 1-5", None, utc(2024, 5, 3, 9), utc(2024, 5, 7, 9, 30))
    assert weekdays == Slot(scheduled_for=utc(2024, 5, 7, 9), missed=2)  # Friday, Monday


def test_catch_up_counts_fire_times_in_the_schedules_zone_across_a_dst_change() -> None:
    # Daily 02:30 in Berlin, down from the day before spring-forward to two days after.
    slot = due_slot(
        "30 2 * * *",
        "Europe/Berlin",
        berlin(2024, 3, 30, 2, 30).astimezone(UTC),
        utc(2024, 4, 1, 12),
    )
    assert slot == Slot(scheduled_for=berlin(2024, 4, 1, 2, 30).astimezone(UTC), missed=2)


# --------------------------------------------------------------------------- backoff


class _Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_backoff_doubles_each_retry_up_to_the_cap() -> None:
    base, cap = timedelta(seconds=0.2), timedelta(seconds=1)
    top = _Fixed(1.0)  # the top of the jitter range: the whole step
    assert [backoff(n, base, cap, top) for n in range(1, 6)] == [
        timedelta(seconds=0.2),
        timedelta(seconds=0.4),
        timedelta(seconds=0.8),
        timedelta(seconds=1),
        timedelta(seconds=1),
    ]
    assert backoff(1, rng=top) == timedelta(seconds=30)  # the defaults: 30 s, doubling …
    assert backoff(50, rng=top) == timedelta(minutes=30)  # … up to 30 minutes


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 10])
def test_backoff_jitters_within_half_and_all_of_the_step(attempt: int) -> None:
    base, cap = timedelta(seconds=0.2), timedelta(seconds=1)
    step = min(cap, base * 2 ** (attempt - 1))
    rng = random.Random(attempt)
    delays = [backoff(attempt, base, cap, rng) for _ in range(500)]
    assert all(step * 0.5 <= d <= step for d in delays)
    assert min(delays) < step * 0.6 and max(delays) > step * 0.9  # spread over the range
    assert backoff(attempt, base, cap, _Fixed(0.0)) == step * 0.5


def test_backoff_grows_whatever_the_jitter_below_the_cap() -> None:
    base, cap = timedelta(seconds=0.2), timedelta(seconds=10)
    rng = random.Random(7)
    for attempt in range(1, 6):
        # Retry n waits at most step(n) and retry n+1 at least step(n+1) / 2 = step(n).
        assert backoff(attempt, base, cap, rng) <= backoff(attempt + 1, base, cap, rng)
