"""One page of a delta round as the target changes it makes.

Graph promises no order and repeats itself (shared/api-contracts.md §3.3): the same object may
come twice in a round, and a large group comes once per slice of its ``members@delta``. So a page
is folded per key, the later occurrence winning, before it is written: an object removed and then
restored in one page ends live, and a member added in one slice is never lost to the next slice,
which only adds and removes other members. A group occurrence without properties (a slice of its
members) leaves the group's row alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from highmark.connectors.msgraph.entities import (
    MEMBERS,
    has_properties,
    is_removed,
    member_row,
    object_row,
)
from highmark.destinations.entities import EntityChanges

# Stored member keys of a group (to remove them with the group).
MembersOf = Callable[[str], Iterable[tuple[Any, ...]]]


@dataclass
class Page:
    """What a page holds: the target changes, and what to count."""

    changes: list[EntityChanges] = field(default_factory=list)
    objects: int = 0  # objects received (a group counts once per occurrence)
    members: int = 0  # member entries received
    last_id: str | None = None


def users_page(value: list[dict[str, Any]], tenant: str, stamp: int, *, sweep: bool) -> Page:
    """A page of ``users/delta``; ``sweep`` (the last page of a full round) also removes every
    user of the tenant the round did not stamp."""
    final: dict[str, dict[str, Any] | None] = {}
    for obj in value:
        uid = str(obj["id"])
        final.pop(uid, None)  # the later occurrence wins, in its own place
        final[uid] = None if is_removed(obj) else object_row("users", obj, tenant, stamp)
    page = Page(objects=len(value), last_id=str(value[-1]["id"]) if value else None)
    page.changes.append(_changes("users", final, tenant, stamp, sweep))
    return page


def groups_page(
    value: list[dict[str, Any]],
    tenant: str,
    stamp: int,
    *,
    sweep: bool,
    groups: bool,
    members: bool,
    members_of: MembersOf,
) -> Page:
    """A page of ``groups/delta``: groups (if ``groups``) and their memberships (if
    ``members``); a removed group takes its stored memberships with it."""
    final: dict[str, dict[str, Any] | None] = {}
    links: dict[tuple[str, str], dict[str, Any] | None] = {}
    removed: set[str] = set()
    count = 0
    for obj in value:
        gid = str(obj["id"])
        if is_removed(obj):
            final.pop(gid, None)
            final[gid] = None
            removed.add(gid)
            for key in [k for k in links if k[0] == gid]:
                del links[key]
            continue
        removed.discard(gid)
        if has_properties(obj):
            final.pop(gid, None)
            final[gid] = object_row("groups", obj, tenant, stamp)
        for entry in obj.get(MEMBERS) or []:
            count += 1
            key = (gid, str(entry["id"]))
            links.pop(key, None)
            links[key] = None if is_removed(entry) else member_row(gid, entry, tenant, stamp)
    page = Page(objects=len(value), members=count, last_id=str(value[-1]["id"]) if value else None)
    if groups:
        page.changes.append(_changes("groups", final, tenant, stamp, sweep))
    if members:
        gone = [key for gid in sorted(removed) for key in members_of(gid)]
        upserts = [row for row in links.values() if row is not None]
        deletes = [key for key, row in links.items() if row is None] + [
            key for key in gone if key not in links or links[key] is None
        ]
        page.changes.append(
            EntityChanges(
                "group_members",
                upserts,
                replace_children_of=[tenant] if sweep else [],
                deletes=list(dict.fromkeys(deletes)),
                stamp=stamp if sweep else None,
            )
        )
    return page


def _changes(
    entity: str, final: dict[str, dict[str, Any] | None], tenant: str, stamp: int, sweep: bool
) -> EntityChanges:
    return EntityChanges(
        entity,
        [row for row in final.values() if row is not None],
        replace_children_of=[tenant] if sweep else [],
        deletes=[(key,) for key, row in final.items() if row is None],
        stamp=stamp if sweep else None,
    )
