"""The fake directory: users and groups with their properties and memberships, and a change log
that delta rounds read (shared/api-contracts.md §3.3).

Every change is a :class:`Change` with a sequence number: a property update (which properties),
a membership added or removed, or the object itself created, deleted (``@removed`` reason
``changed`` — soft, restorable — or ``deleted`` — hard) or restored. :meth:`Directory.forget`
removes an object and its log entries (a deletion no later round reports: only a full round and a
sweep find it). Deleting a user removes it from its groups, each a logged membership change.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

USER_DEFAULTS = (
    "displayName", "userPrincipalName", "mail", "accountEnabled", "givenName", "surname",
    "jobTitle", "department", "officeLocation", "userType", "employeeId", "mobilePhone",
)  # fmt: skip
GROUP_DEFAULTS = (
    "displayName", "description", "mail", "mailEnabled", "mailNickname", "securityEnabled",
    "groupTypes", "visibility",
)  # fmt: skip
KINDS = ("users", "groups")


@dataclass
class DirectoryObject:
    id: str
    kind: str  # "users" | "groups"
    props: dict[str, Any]
    removed: str | None = None  # "changed" (soft-deleted) | "deleted" (hard)
    members: dict[str, str] = field(default_factory=dict)  # member id -> "user" | "group" …
    member_types: dict[str, str] = field(default_factory=dict)  # every member ever, its type

    @property
    def live(self) -> bool:
        return self.removed is None


@dataclass(frozen=True)
class Change:
    seq: int
    kind: str
    id: str
    props: frozenset[str] = frozenset()
    member: str | None = None
    state: bool = False  # the object itself: created, deleted or restored


@dataclass
class Touched:
    """What changed about one object between two points of the log."""

    props: set[str] = field(default_factory=set)
    members: list[str] = field(default_factory=list)  # in order, each once
    state: bool = False
    last_seq: int = 0


class Directory:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, DirectoryObject]] = {k: {} for k in KINDS}
        self.log: list[Change] = []
        self._numbers = itertools.count(1)

    @property
    def seq(self) -> int:
        return self.log[-1].seq if self.log else 0

    def _record(self, kind: str, oid: str, **what: Any) -> None:
        self.log.append(Change(self.seq + 1, kind, oid, **what))

    def get(self, kind: str, oid: str) -> DirectoryObject | None:
        return self.objects[kind].get(oid)

    def live(self, kind: str) -> list[DirectoryObject]:
        return [o for o in self.objects[kind].values() if o.live]

    # ------------------------------------------------------------------ changes

    def add_user(self, oid: str | None = None, **props: Any) -> DirectoryObject:
        n = next(self._numbers)
        defaults: dict[str, Any] = {
            "displayName": f"User {n}",
            "userPrincipalName": f"user{n}@contoso.example",
            "mail": f"user{n}@contoso.example",
            "accountEnabled": True,
            "givenName": "User",
            "surname": str(n),
            "jobTitle": None,
            "department": "Engineering" if n % 2 else "Sales",
            "officeLocation": None,
            "userType": "Member",
            "employeeId": f"E{n:06d}",
            "mobilePhone": None,
        }
        return self._add("users", oid, {**defaults, **props})

    def add_group(self, oid: str | None = None, **props: Any) -> DirectoryObject:
        n = next(self._numbers)
        defaults: dict[str, Any] = {
            "displayName": f"Group {n}",
            "description": None,
            "mail": None,
            "mailEnabled": False,
            "mailNickname": f"group{n}",
            "securityEnabled": True,
            "groupTypes": [],
            "visibility": None,
        }
        return self._add("groups", oid, {**defaults, **props})

    def _add(self, kind: str, oid: str | None, props: dict[str, Any]) -> DirectoryObject:
        obj = DirectoryObject(oid or str(uuid.uuid4()), kind, props)
        self.objects[kind][obj.id] = obj
        self._record(kind, obj.id, state=True, props=frozenset(props))
        return obj

    def update(self, kind: str, oid: str, **props: Any) -> None:
        obj = self.objects[kind][oid]
        obj.props.update(props)
        self._record(kind, oid, props=frozenset(props))

    def delete(self, kind: str, oid: str, *, hard: bool = False) -> None:
        obj = self.objects[kind][oid]
        obj.removed = "deleted" if hard else "changed"
        self._record(kind, oid, state=True)
        if kind == "users":
            for group in self.live("groups"):
                if oid in group.members:
                    self.remove_member(group.id, oid)

    def restore(self, kind: str, oid: str) -> None:
        obj = self.objects[kind][oid]
        obj.removed = None
        self._record(kind, oid, state=True, props=frozenset(obj.props))

    def forget(self, kind: str, oid: str) -> None:
        """Remove an object with no trace in the log (no round will report it)."""
        self.objects[kind].pop(oid)
        self.log = [c for c in self.log if not (c.kind == kind and c.id == oid)]
        for group in self.objects["groups"].values():
            group.members.pop(oid, None)

    def add_member(self, group_id: str, member_id: str, member_type: str = "user") -> None:
        group = self.objects["groups"][group_id]
        group.members[member_id] = member_type
        group.member_types[member_id] = member_type
        self._record("groups", group_id, member=member_id)

    def add_members(self, group_id: str, member_ids: Iterable[str]) -> None:
        for member_id in member_ids:
            self.add_member(group_id, member_id)

    def remove_member(self, group_id: str, member_id: str) -> None:
        self.objects["groups"][group_id].members.pop(member_id, None)
        self._record("groups", group_id, member=member_id)

    # ------------------------------------------------------------------ reading the log

    def touched(self, kind: str, after: int, upto: int) -> dict[str, Touched]:
        """The objects of ``kind`` changed in ``(after, upto]``, in the order of their last
        change."""
        found: dict[str, Touched] = {}
        for change in self.log:
            if change.kind != kind or not after < change.seq <= upto:
                continue
            entry = found.setdefault(change.id, Touched())
            entry.props |= change.props
            entry.state = entry.state or change.state
            if change.member is not None and change.member not in entry.members:
                entry.members.append(change.member)
            entry.last_seq = change.seq
        return dict(sorted(found.items(), key=lambda item: item[1].last_seq))
