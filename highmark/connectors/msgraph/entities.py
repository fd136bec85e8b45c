"""The Entra ID tables: ``<prefix>users``, ``groups`` and ``group_members``, and Graph objects as
their rows.

Every row carries ``tenant_id``, the directory it belongs to, and ``synced_round``, the round
that last read it (highmark/connectors/rounds.py). A full round (the first, or a resync) reads
every live object, each stamped with the round's stamp, so when it ends, the rows of the tenant
stamped otherwise are the objects deleted meanwhile: they go (mark-and-sweep,
shared/api-contracts.md §3.5) in the same transaction as the round's last page.
"""

from __future__ import annotations

from typing import Any

from highmark.connectors.rounds import STAMP_COLUMN
from highmark.destinations.entities import Entity, Field, FieldType

TEXT, BOOL, JSON, INT = FieldType.TEXT, FieldType.BOOLEAN, FieldType.JSON, FieldType.INTEGER
STAMP = STAMP_COLUMN
TENANT = "tenant_id"
MEMBERS = "members@delta"

# (Graph property, column, type): what each table holds besides the keys, the tenant and `raw`.
USER_COLUMNS = (
    ("displayName", "display_name", TEXT),
    ("userPrincipalName", "user_principal_name", TEXT),
    ("mail", "mail", TEXT),
    ("accountEnabled", "account_enabled", BOOL),
    ("givenName", "given_name", TEXT),
    ("surname", "surname", TEXT),
    ("jobTitle", "job_title", TEXT),
    ("department", "department", TEXT),
    ("officeLocation", "office_location", TEXT),
    ("userType", "user_type", TEXT),
)
GROUP_COLUMNS = (
    ("displayName", "display_name", TEXT),
    ("description", "description", TEXT),
    ("mail", "mail", TEXT),
    ("mailEnabled", "mail_enabled", BOOL),
    ("mailNickname", "mail_nickname", TEXT),
    ("securityEnabled", "security_enabled", BOOL),
    ("groupTypes", "group_types", JSON),
)
_OBJECT = (Field("id", TEXT, nullable=False), Field(TENANT, TEXT, nullable=False))

USERS = Entity(
    "users",
    (*_OBJECT, *(Field(c, t) for _, c, t in USER_COLUMNS), Field(STAMP, INT)),
    parent=TENANT,
    stamp=STAMP,
)
GROUPS = Entity(
    "groups",
    (*_OBJECT, *(Field(c, t) for _, c, t in GROUP_COLUMNS), Field(STAMP, INT)),
    parent=TENANT,
    stamp=STAMP,
)
GROUP_MEMBERS = Entity(
    "group_members",
    (
        Field("group_id", TEXT, nullable=False),
        Field("member_id", TEXT, nullable=False),
        Field(TENANT, TEXT, nullable=False),
        Field("member_type", TEXT),
        Field(STAMP, INT),
    ),
    key=("group_id", "member_id"),
    parent=TENANT,
    stamp=STAMP,
)
ENTITIES = {"users": USERS, "groups": GROUPS, "group_members": GROUP_MEMBERS}
COLUMNS = {"users": USER_COLUMNS, "groups": GROUP_COLUMNS}


def select(entity: str, extra: list[str], *, members: bool) -> str:
    """The ``$select`` of a round: what the tables hold, ``extra``, and ``members`` (groups)."""
    wanted = ["id", *(p for p, _, _ in COLUMNS[entity])]
    wanted += [p for p in extra if p not in wanted]
    if members:
        wanted.append("members")
    return ",".join(wanted)


def is_removed(obj: dict[str, Any]) -> bool:
    return "@removed" in obj


def has_properties(obj: dict[str, Any]) -> bool:
    """Whether the object brings properties, or only a slice of a group's members (a large
    group repeats over pages, its later occurrences with ``members@delta`` alone)."""
    return any(not k.startswith("@") and k not in ("id", MEMBERS) for k in obj)


def object_row(entity: str, obj: dict[str, Any], tenant: str, stamp: int) -> dict[str, Any]:
    raw = {k: v for k, v in obj.items() if k != MEMBERS}
    row: dict[str, Any] = {"id": str(obj["id"]), TENANT: tenant, STAMP: stamp, "raw": raw}
    for prop, column, _ in COLUMNS[entity]:
        row[column] = obj.get(prop)
    return row


def member_type(entry: dict[str, Any]) -> str | None:
    """``user`` from ``#microsoft.graph.user``."""
    kind = entry.get("@odata.type")
    return kind.rsplit(".", 1)[-1] if isinstance(kind, str) and kind else None


def member_row(group_id: str, entry: dict[str, Any], tenant: str, stamp: int) -> dict[str, Any]:
    return {
        "group_id": group_id,
        "member_id": str(entry["id"]),
        TENANT: tenant,
        "member_type": member_type(entry),
        STAMP: stamp,
        "raw": entry,
    }
