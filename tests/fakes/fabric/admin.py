"""The fake Fabric's admin (tenant-wide) listings, in preview upstream (shared/api-contracts.md
§4.2): ``GET /v1/admin/workspaces`` (``state=active|deleted``, ``type``, ``capacityId``,
``name``) and ``GET /v1/admin/items`` (``workspaceId``, ``type``, ``state``), with their own
shapes — the array key ``workspaces`` / ``itemEntities``, ``name`` instead of ``displayName``,
``state``, and ``lastUpdatedDate`` on items, the only listing that has it. Only principals in
:attr:`AdminApi.admins` may call them (403 ``InsufficientScopes`` otherwise), at most 200 times per
hour of fake time (429 with ``Retry-After`` until the oldest call is an hour old).
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Any

from .model import Tenant

ADMIN_LIMIT = 200
ADMIN_WINDOW = timedelta(hours=1)


class AdminApi:
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.admins: set[str] = set()
        self.calls: deque[datetime] = deque()

    def throttled(self, now: datetime) -> float | None:
        """Seconds to wait when the hour's budget is spent; else counts this call."""
        while self.calls and now - self.calls[0] >= ADMIN_WINDOW:
            self.calls.popleft()
        if len(self.calls) >= ADMIN_LIMIT:
            return (self.calls[0] + ADMIN_WINDOW - now).total_seconds()
        self.calls.append(now)
        return None

    def workspaces(self, params: dict[str, str]) -> list[dict[str, Any]]:
        state = params.get("state")
        found = [
            {"id": w.id, "name": w.displayName, "type": w.type, "state": "Active",
             "capacityId": w.capacityId}
            for w in self.tenant.workspaces.values()
        ] + [
            {"id": w.id, "name": w.displayName, "type": w.type, "state": "Deleted",
             "capacityId": w.capacityId}
            for w in self.tenant.deleted_workspaces.values()
        ]  # fmt: skip
        if state:
            found = [w for w in found if w["state"].lower() == state.lower()]
        for key in ("type", "capacityId"):
            if params.get(key):
                found = [w for w in found if w[key] == params[key]]
        if params.get("name"):
            found = [w for w in found if w["name"] == params["name"]]
        return found

    def items(self, params: dict[str, str]) -> list[dict[str, Any]]:
        found = [
            {
                "id": i.id,
                "name": i.displayName,
                "type": i.type,
                "description": i.description,
                "state": "Active",
                "lastUpdatedDate": i.lastUpdatedDate,
                "workspaceId": i.workspaceId,
                "folderId": i.folderId,
            }
            for i in self.tenant.items.values()
        ]
        for key in ("workspaceId", "type"):
            if params.get(key):
                found = [i for i in found if i[key] == params[key]]
        if params.get("state") and params["state"].lower() != "active":
            found = []
        return found
