"""Delta rounds of the fake Graph: what a round serves, its state tokens, and how an entry of it
is rendered (shared/api-contracts.md §3.2 to 3.5).

A round is fixed when its first request comes: the objects it will serve (an initial round: every
live object; a delta round: every object changed since its delta token) and the point of the log
its delta link will stand for. Objects are rendered when their page is served, as they are then.
A group brings its members in slices of ``member_slice``: its first occurrence has its properties,
the later ones (``repeat_properties`` off) only ``id`` and ``members@delta``.

``$skiptoken`` and ``$deltatoken`` values are opaque (base64url of random bytes) and stand for
server-side state; a link must come back exactly as it was given (its whole query string).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .model import Directory, DirectoryObject


@dataclass
class Entry:
    """One object occurrence in a round: the object, whether its properties come with it, and
    a slice of member changes ``(member id, type, present)``."""

    kind: str
    id: str
    first: bool = True
    props: frozenset[str] | None = None  # changed properties (minimal); None: all selected
    members: list[tuple[str, str, bool]] | None = None


@dataclass
class Round:
    kind: str
    select: tuple[str, ...]
    end_seq: int
    entries: list[Entry]
    minimal: bool = False
    served: int = 0  # pages served


@dataclass(frozen=True)
class DeltaState:
    """What a ``$deltatoken`` stands for."""

    kind: str
    select: tuple[str, ...]
    seq: int
    issued_at: datetime
    ids: tuple[str, ...] | None = None  # a $filter=id eq … round


@dataclass(frozen=True)
class SkipState:
    """What a ``$skiptoken`` stands for: a round and where its next page starts."""

    round: Round
    offset: int
    query: str  # the link's query string, which must come back unchanged
    ids: tuple[str, ...] | None = None


@dataclass
class TokenBook:
    skips: dict[str, SkipState] = field(default_factory=dict)
    deltas: dict[str, DeltaState] = field(default_factory=dict)

    @staticmethod
    def new() -> str:
        return base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")


def initial_round(
    directory: Directory,
    kind: str,
    select: tuple[str, ...],
    member_slice: int,
    ids: tuple[str, ...] | None,
) -> Round:
    entries: list[Entry] = []
    for obj in directory.live(kind):
        if ids is not None and obj.id not in ids:
            continue
        members = None
        if kind == "groups" and "members" in select:
            members = [(m, t, True) for m, t in obj.members.items()]
        entries += _occurrences(kind, obj.id, None, members, member_slice)
    return Round(kind, select, directory.seq, entries)


def delta_round(
    directory: Directory,
    state: DeltaState,
    member_slice: int,
    *,
    minimal: bool,
) -> Round:
    """The objects of ``state.kind`` changed since ``state.seq``: those whose selected properties
    changed, that were created, deleted or restored, and (groups with ``members`` selected) whose
    membership changed."""
    select = state.select
    tracked = set(select) - {"id", "members"}
    entries: list[Entry] = []
    for oid, touched in directory.touched(state.kind, state.seq, directory.seq).items():
        if state.ids is not None and oid not in state.ids:
            continue
        props = touched.props & tracked
        members = None
        if state.kind == "groups" and "members" in select and touched.members:
            obj = directory.get("groups", oid)
            if obj is not None:
                members = [
                    (m, obj.member_types.get(m, "user"), m in obj.members) for m in touched.members
                ]
        if not (touched.state or props or members):
            continue  # only properties nobody selected changed
        entries += _occurrences(
            state.kind, oid, frozenset(props) if minimal else None, members, member_slice
        )
    return Round(state.kind, select, directory.seq, entries, minimal=minimal)


def _occurrences(
    kind: str,
    oid: str,
    props: frozenset[str] | None,
    members: list[tuple[str, str, bool]] | None,
    member_slice: int,
) -> list[Entry]:
    if not members:
        return [Entry(kind, oid, True, props, [] if members is not None else None)]
    slices = [members[i : i + member_slice] for i in range(0, len(members), member_slice)]
    return [Entry(kind, oid, i == 0, props, part) for i, part in enumerate(slices)]


def render(
    directory: Directory, entry: Entry, select: tuple[str, ...], *, repeat_properties: bool
) -> dict[str, Any] | None:
    """An entry as Graph sends it, from the object as it is now (None: forgotten)."""
    obj = directory.get(entry.kind, entry.id)
    if obj is None:
        return None
    if not obj.live:
        return {"id": obj.id, "@removed": {"reason": obj.removed}}
    out: dict[str, Any] = {"id": obj.id}
    if entry.first or repeat_properties:
        out.update(_properties(obj, select, entry.props))
    if entry.members is not None:
        out["members@delta"] = [
            {"@odata.type": f"#microsoft.graph.{kind}", "id": mid}
            | ({} if present else {"@removed": {"reason": "deleted"}})
            for mid, kind, present in entry.members
        ]
    return out


def _properties(
    obj: DirectoryObject, select: tuple[str, ...], changed: frozenset[str] | None
) -> dict[str, Any]:
    names = [s for s in select if s not in ("id", "members")]
    if changed is not None:
        names = [n for n in names if n in changed]
    return {name: obj.props.get(name) for name in names}
