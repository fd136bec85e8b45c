"""The Fabric tables: ``<prefix>workspaces`` and ``<prefix>items``, and listings as their rows.

An item row carries ``synced_round``, the listing of its workspace that last read it
(highmark/connectors/rounds.py): when the listing's last page is in, the workspace's rows stamped
otherwise are the items deleted since (shared/api-contracts.md §4.4), removed in the same
transaction as that page.
"""

from __future__ import annotations

from typing import Any

from highmark.connectors.rounds import STAMP_COLUMN
from highmark.destinations.entities import Entity, Field, FieldType

TEXT, INT = FieldType.TEXT, FieldType.INTEGER
STAMP = STAMP_COLUMN

WORKSPACES = Entity(
    "workspaces",
    (
        Field("id", TEXT, nullable=False),
        Field("display_name", TEXT),
        Field("type", TEXT),
        Field("capacity_id", TEXT),
        Field("description", TEXT),
        Field("domain_id", TEXT),
    ),
)
ITEMS = Entity(
    "items",
    (
        Field("id", TEXT, nullable=False),
        Field("workspace_id", TEXT, nullable=False),
        Field("display_name", TEXT),
        Field("type", TEXT),
        Field("description", TEXT),
        Field("folder_id", TEXT),
        Field(STAMP, INT),
    ),
    parent="workspace_id",
    stamp=STAMP,
)


def workspace_row(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(obj["id"]),
        "display_name": obj.get("displayName"),
        "type": obj.get("type"),
        "capacity_id": obj.get("capacityId"),
        "description": obj.get("description"),
        "domain_id": obj.get("domainId"),
        "raw": obj,
    }


def item_row(obj: dict[str, Any], workspace_id: str, stamp: int) -> dict[str, Any]:
    return {
        "id": str(obj["id"]),
        "workspace_id": str(obj.get("workspaceId") or workspace_id),
        "display_name": obj.get("displayName"),
        "type": obj.get("type"),
        "description": obj.get("description"),
        "folder_id": obj.get("folderId"),
        STAMP: stamp,
        "raw": obj,
    }
