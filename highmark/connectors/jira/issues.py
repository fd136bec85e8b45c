"""Jira issues: the JQL that finds a project's changed issues, and the rows they become.

JQL compares dates to the minute, in the searching user's time zone, with no offset in the
literal (shared/api-contracts.md §2.4). So a mark is written in the user's zone, floored to its
minute, and compared with ``>=``: everything updated in the mark's minute is read again (the
upsert makes that harmless) and nothing later in that minute is lost. A mark inside the hour a
fall-back repeats is ambiguous in local time: it moves back an hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from highmark import clock
from highmark.destinations.entities import Entity, Field, FieldType
from highmark.errors import SourceError

T, TS = FieldType.TEXT, FieldType.TIMESTAMP

ISSUES = Entity(
    "issues",
    (
        Field("id", T, nullable=False),
        Field("key", T),
        Field("project", T),
        Field("summary", T),
        Field("status", T),
        Field("issue_type", T),
        Field("assignee", T),
        Field("assignee_account_id", T),
        Field("created", TS),
        Field("updated", TS),
    ),
    # A search may lag behind the issue (eventual consistency): never overwrite a newer copy.
    version="updated",
)


def user_zone(me: dict[str, Any]) -> str:
    """The zone JQL dates are read in: the user's ``timeZone`` from ``/rest/api/3/myself``. One
    this machine does not know would put every literal in the wrong zone: refused, not guessed."""
    zone = str(me.get("timeZone") or "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SourceError(
            f"Jira reads {me.get('emailAddress') or 'the user'}'s JQL dates in time zone "
            f"{zone!r}, which this machine does not know (install or update tzdata)",
            retryable=False,
        ) from None
    return zone


def search_jql(project: str, floor: datetime | None, zone: str, extra: str | None) -> str:
    """The project's issues updated at or after ``floor``, newest first. The key is quoted: some
    keys (``BY``, ``IN``, ``OR``…) are JQL words, a syntax error unquoted."""
    parts = [f'project = "{project}"']
    if floor is not None:
        parts.append(f'updated >= "{jql_literal(floor, zone)}"')
    if extra:
        parts.append(f"({extra})")
    # Newest first: an issue updated during the paging leaves its place for the head of the list
    # (already read), so it is read again rather than making a neighbour skip a page.
    return " AND ".join(parts) + " ORDER BY updated DESC, key DESC"


def jql_literal(instant: datetime, zone: str) -> str:
    """``instant`` as a JQL date literal in ``zone``, floored to the minute."""
    local = clock.ensure_utc(instant).astimezone(ZoneInfo(zone))
    if _ambiguous(local):
        local = (clock.ensure_utc(instant) - timedelta(hours=1)).astimezone(ZoneInfo(zone))
    return local.strftime("%Y-%m-%d %H:%M")


def _ambiguous(local: datetime) -> bool:
    """A wall-clock time the zone shows twice (the hour a fall-back repeats)."""
    other = local.replace(fold=1 - local.fold)
    return other.utcoffset() != local.utcoffset()


def parse_time(text: str | None) -> datetime | None:
    """A Jira timestamp (``2016-09-28T23:08:32.097+1000``; without its milliseconds too) as an
    aware UTC datetime."""
    if not text:
        return None
    return clock.ensure_utc(datetime.fromisoformat(text))


def issue_row(issue: dict[str, Any], project: str) -> dict[str, Any]:
    fields = issue.get("fields") or {}
    assignee = fields.get("assignee") or {}
    return {
        "id": str(issue["id"]),
        "key": issue.get("key"),
        "project": (fields.get("project") or {}).get("key") or project,
        "summary": fields.get("summary"),
        "status": (fields.get("status") or {}).get("name"),
        "issue_type": (fields.get("issuetype") or {}).get("name"),
        "assignee": assignee.get("displayName"),
        "assignee_account_id": assignee.get("accountId"),
        "created": parse_time(fields.get("created")),
        "updated": parse_time(fields.get("updated")),
        "raw": issue,
    }
