"""The fake Fabric tenant: workspaces (with the roles principals hold in them) and their items,
rendered as the REST API shows them (shared/api-contracts.md §4.2)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Workspace:
    id: str
    displayName: str
    description: str = ""
    type: str = "Workspace"
    capacityId: str | None = None
    roles: dict[str, str] = field(default_factory=dict)  # principal id -> Admin|Member|…

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "displayName": self.displayName,
            "description": self.description,
            "type": self.type,
        }
        if self.capacityId:
            out["capacityId"] = self.capacityId
        return out


@dataclass
class Item:
    id: str
    workspaceId: str
    displayName: str
    type: str = "SemanticModel"
    description: str = ""
    folderId: str | None = None
    lastUpdatedDate: str | None = None  # admin listings only

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "displayName": self.displayName,
            "description": self.description,
            "workspaceId": self.workspaceId,
        }
        if self.folderId:
            out["folderId"] = self.folderId
        return out


class Tenant:
    """Workspaces and items, in creation order."""

    def __init__(self) -> None:
        self.workspaces: dict[str, Workspace] = {}
        self.deleted_workspaces: dict[str, Workspace] = {}  # admin listings show them
        self.items: dict[str, Item] = {}
        self._numbers = itertools.count(1)

    def add_workspace(
        self, name: str | None = None, *, principals: dict[str, str] | None = None, **fields: Any
    ) -> Workspace:
        n = next(self._numbers)
        workspace = Workspace(
            str(uuid.uuid4()), name or f"Workspace {n}", roles=dict(principals or {}), **fields
        )
        self.workspaces[workspace.id] = workspace
        return workspace

    def add_item(self, workspace: Workspace | str, name: str | None = None, **fields: Any) -> Item:
        workspace_id = workspace if isinstance(workspace, str) else workspace.id
        n = next(self._numbers)
        item = Item(str(uuid.uuid4()), workspace_id, name or f"Item {n}", **fields)
        self.items[item.id] = item
        return item

    def items_of(self, workspace_id: str) -> list[Item]:
        return [i for i in self.items.values() if i.workspaceId == workspace_id]

    def delete_item(self, item_id: str) -> None:
        del self.items[item_id]

    def delete_workspace(self, workspace_id: str) -> None:
        self.deleted_workspaces[workspace_id] = self.workspaces.pop(workspace_id)
        for item in self.items_of(workspace_id):
            del self.items[item.id]
