"""Jira's two time formats: JQL date literals (read in the searching user's zone, minute
precision) and response timestamps (rendered in the site's zone, ``…T23:08:32.097-0800``).

The two zones differ on purpose in the fake's defaults, because a connector that confuses them
loses or re-reads an hour's worth of issues on a real site.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from .jql import JqlError
from .model import to_ms

MINUTE_MS = 60_000
_DATE = re.compile(r"^(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?:\s+(\d{1,2}):(\d{2}))?$")
_PERIOD = re.compile(r"^([-+])?\s*((?:\d+\s*[wdhm]?\s*)+)$")
_PERIOD_PART = re.compile(r"(\d+)\s*([wdhm]?)")
_UNIT_MS = {"w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000, "m": MINUTE_MS, "": MINUTE_MS}
FORMATS_HINT = (
    "Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', "
    "'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."
)


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def literal_ms(text: str, *, quoted: bool, field: str, user_zone: str, now_ms: int) -> int:
    """The instant (epoch ms) a JQL date literal stands for.

    Quoted: an absolute date or date-time, wall-clock time in ``user_zone`` (midnight when no
    time is given; in a DST gap the clock is moved forward, in a repeated hour the first one
    counts, as java.time does), or a period relative to ``now_ms`` such as ``-15m``, ``-2h``,
    ``-1d``, ``-1w``, ``4w 2d`` (default unit: minutes). Unquoted: only a number, read as epoch
    milliseconds; the fake is stricter than Jira here so that a connector always quotes.
    """
    text = text.strip()
    if not quoted:
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        raise JqlError(
            f"Date value '{text}' for field '{field}' is invalid. {FORMATS_HINT} "
            "(The fake requires date literals to be quoted.)"
        )
    if match := _DATE.match(text):
        year, _, month, day, hour, minute = match.groups()
        try:
            wall = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0))
        except ValueError:
            raise JqlError(
                f"Date value '{text}' for field '{field}' is invalid. {FORMATS_HINT}"
            ) from None
        # fold=0 gives what java.time gives: in a DST gap the pre-gap offset (the same
        # instant as moving the clock forward), in a repeated hour the first occurrence.
        return to_ms(wall.replace(tzinfo=zone(user_zone), fold=0))
    if match := _PERIOD.match(text):
        sign = -1 if match.group(1) == "-" else 1
        offset = sum(int(n) * _UNIT_MS[u] for n, u in _PERIOD_PART.findall(match.group(2)))
        return now_ms + sign * offset
    raise JqlError(f"Date value '{text}' for field '{field}' is invalid. {FORMATS_HINT}")


def jql_literal(when: datetime, user_zone: str) -> str:
    """``when`` written as Jira expects it in JQL for a user in ``user_zone`` (floored to the
    minute): ``"yyyy-MM-dd HH:mm"``. For tests that build the JQL a connector should send."""
    return when.astimezone(zone(user_zone)).strftime("%Y-%m-%d %H:%M")


def render(ms: int, site_zone: str) -> str:
    """A response timestamp: milliseconds and an offset without a colon, in ``site_zone``."""
    iso = datetime.fromtimestamp(ms // 1000, zone(site_zone)).isoformat()  # …T01:15:42-08:00
    return f"{iso[:19]}.{ms % 1000:03d}{iso[19:22]}{iso[23:25]}"


def parse_timestamp(text: str) -> datetime:
    """Parse a Jira response timestamp (``2016-09-28T23:08:32.097-0800``) into an aware datetime
    (a test helper; the connector has its own)."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
