"""``FakeFabric``: Microsoft Fabric's workspace and item listings on 127.0.0.1 (contract:
shared/api-contracts.md §4.6), over a :class:`~.model.Tenant` a test changes between pages.

Served: ``GET /v1/workspaces`` (``roles``), ``/v1/workspaces/{id}``,
``/v1/workspaces/{id}/items`` (``type``, ``recursive``, ``rootFolderId``) and
``/v1/workspaces/{id}/semanticModels``; a small page size (``page_size``, :meth:`plan_pages`, 0:
an empty page that still continues), ``continuationToken`` percent-encoded plus a matching
``continuationUri`` (or the token alone: ``with_uri = False``), both absent (or null:
``end_style = "null"``) on the last page; a double-encoded token refused with 400. Only the
workspaces the caller's principal (the token's app) has a role in are listed. Errors are
``ErrorResponse`` bodies: 403 ``PrincipalTypeNotSupported`` when the tenant setting is off
(``service_principals = False``), 403/404 for a workspace whose role was revoked
(:meth:`revoke`), 429 with ``Retry-After`` (:meth:`throttle`), ``isRetriable`` 5xx
(:meth:`flaky`), 401 ``TokenExpired``. The admin listings are :mod:`.admin`'s.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from tests.fakes.base import FakeClock, FakeServer, Fault, LoggedRequest, Response
from tests.fakes.entra import CLIENT_ID, TokenIssuer

from .admin import AdminApi
from .model import Item, Tenant, Workspace
from .paging import ContinuationBook, Listing, TokenError

_ADMIN = re.compile(r"/v1/admin/(?P<what>workspaces|items)")
_WORKSPACES = re.compile(r"/v1/workspaces")
_WORKSPACE = re.compile(r"/v1/workspaces/(?P<id>[^/]+)")
_ITEMS = re.compile(r"/v1/workspaces/(?P<id>[^/]+)/(?P<what>items|semanticModels)")


class FakeFabric(FakeServer):
    def __init__(
        self,
        issuer: TokenIssuer,
        *,
        clock: FakeClock | None = None,
        latency: float = 0.0,
        page_size: int = 3,
        token_ttl: timedelta | None = None,
    ) -> None:
        super().__init__(clock=clock or issuer.clock, latency=latency)
        self.issuer = issuer
        self.tenant = Tenant()
        self.principal = CLIENT_ID
        self.page_size = page_size
        self.with_uri = True
        self.end_style = "absent"  # or "null"
        self.service_principals = True
        self.continuations = ContinuationBook(token_ttl)
        self.admin = AdminApi(self.tenant)
        self._revoked: dict[str, int] = {}
        self._plan: list[int] = []

    @property
    def fabric_url(self) -> str:
        """The connection's ``url``: ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    @property
    def audience(self) -> str:
        return self.url

    # ------------------------------------------------------------------ test controls

    def add_workspace(self, name: str | None = None, **fields: Any) -> Workspace:
        """A workspace the connector's principal is a Viewer of (unless ``principals``)."""
        fields.setdefault("principals", {self.principal: "Viewer"})
        with self.lock:
            return self.tenant.add_workspace(name, **fields)

    def add_item(self, workspace: Workspace | str, name: str | None = None, **fields: Any) -> Item:
        fields.setdefault("lastUpdatedDate", self._stamp())
        with self.lock:
            return self.tenant.add_item(workspace, name, **fields)

    def rename_item(self, item_id: str, name: str) -> None:
        """A change the admin listing's ``lastUpdatedDate`` shows."""
        with self.lock:
            item = self.tenant.items[item_id]
            item.displayName, item.lastUpdatedDate = name, self._stamp()

    def _stamp(self) -> str:
        return self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def revoke(self, workspace_id: str, *, status: int = 403) -> None:
        """The principal loses its role: the workspace leaves the listing, its items answer
        ``status`` (403 ``InsufficientPrivileges``, or 404 ``WorkspaceNotFound``)."""
        with self.lock:
            self.tenant.workspaces[workspace_id].roles.pop(self.principal, None)
            self._revoked[workspace_id] = status

    def plan_pages(self, *sizes: int) -> None:
        """The sizes of the next pages served, in order (0: an empty page that continues)."""
        with self.lock:
            self._plan.extend(sizes)

    def throttle(
        self, on_request: int | None = None, *, path: str | None = None, retry_after: int = 55
    ) -> Fault:
        body = self._error_body("TooManyRequests", "The request was throttled.", retriable=True)
        return self.fail(
            status=429,
            on_request=on_request,
            path=path,
            headers={"Retry-After": str(retry_after)},
            body=body,
        )

    def flaky(
        self, on_request: int | None = None, *, path: str | None = None, status: int = 500
    ) -> Fault:
        """An error Fabric marks ``isRetriable``."""
        body = self._error_body("ServiceUnavailable", "Try again later.", retriable=True)
        return self.fail(status=status, on_request=on_request, path=path, body=body)

    def item_listings(self, workspace_id: str | None = None) -> list[LoggedRequest]:
        return [
            r
            for r in self.requests
            if (m := _ITEMS.fullmatch(r.path)) and workspace_id in (None, m["id"])
        ]

    # ------------------------------------------------------------------ serving

    def handle(self, request: LoggedRequest) -> Response:
        checked = self.issuer.check(request.headers.get("authorization"), self.audience)
        if isinstance(checked, str):
            return self._error(
                401,
                "TokenExpired" if "expired" in checked else "Unauthorized",
                f"Access token validation failed ({checked}).",
            )
        if not self.service_principals:
            return self._error(
                403,
                "PrincipalTypeNotSupported",
                "The operation is not supported for the principal type.",
            )
        principal = checked.client_id
        if request.method != "GET":
            return self._error(405, "MethodNotAllowed", "Only GET is served.")
        if found := _ADMIN.fullmatch(request.path):
            return self._admin(request, found["what"], principal)
        if _WORKSPACES.fullmatch(request.path):
            roles = {r.strip() for r in (request.param("roles") or "").split(",") if r.strip()}
            spaces = [
                w
                for w in self.tenant.workspaces.values()
                if principal in w.roles and (not roles or w.roles[principal] in roles)
            ]
            return self._listing(request, [w.render() for w in spaces])
        if found := _ITEMS.fullmatch(request.path):
            denied = self._access(found["id"], principal)
            if denied is not None:
                return denied
            items = self.tenant.items_of(found["id"])
            kind = "SemanticModel" if found["what"] == "semanticModels" else request.param("type")
            if kind:
                items = [i for i in items if i.type == kind]
            items = _in_folder(items, request.param("rootFolderId"), request.param("recursive"))
            return self._listing(request, [i.render() for i in items])
        if found := _WORKSPACE.fullmatch(request.path):
            denied = self._access(found["id"], principal)
            return denied or Response.json(self.tenant.workspaces[found["id"]].render())
        return self._error(404, "EntityNotFound", "No such API.")

    def _admin(self, request: LoggedRequest, what: str, principal: str) -> Response:
        if principal not in self.admin.admins:
            return self._error(
                403, "InsufficientScopes", "The caller is not a Fabric administrator."
            )
        wait = self.admin.throttled(self.clock.now())
        if wait is not None:
            body = self._error_body("RequestBlocked", "Admin API limit reached.", retriable=True)
            return Response.json(body, status=429, headers={"Retry-After": str(int(wait) + 1)})
        params = {k: v[0] for k, v in request.query.items() if k != "continuationToken"}
        if what == "workspaces":
            return self._listing(request, self.admin.workspaces(params), key="workspaces")
        return self._listing(request, self.admin.items(params), key="itemEntities")

    def _access(self, workspace_id: str, principal: str) -> Response | None:
        workspace = self.tenant.workspaces.get(workspace_id)
        if workspace is None:
            return self._error(404, "WorkspaceNotFound", "The requested workspace was not found.")
        if principal in workspace.roles:
            return None
        if self._revoked.get(workspace_id, 403) == 404:
            return self._error(404, "WorkspaceNotFound", "The requested workspace was not found.")
        return self._error(
            403, "InsufficientPrivileges", "The caller does not have sufficient permissions."
        )

    def _listing(
        self, request: LoggedRequest, records: list[dict[str, Any]], *, key: str = "value"
    ) -> Response:
        try:
            listing = self.continuations.redeem(request.raw_query, request.path, self.clock.now())
        except TokenError as exc:
            return self._error(400, "InvalidContinuationToken", str(exc))
        own = {k: v[0] for k, v in request.query.items() if k != "continuationToken"}
        offset = listing.offset if listing is not None else 0
        query = listing.query if listing is not None else urlencode(own)
        size = self._plan.pop(0) if self._plan else self.page_size
        page = records[offset : offset + size]
        body: dict[str, Any] = {key: page}
        end = offset + len(page)
        if end < len(records) or (size == 0 and offset < len(records)):
            token = self.continuations.issue(Listing(request.path, query, end, self.clock.now()))
            body["continuationToken"] = token
            if self.with_uri:
                joined = f"{query}&" if query else ""
                body["continuationUri"] = (
                    f"{self.url}{request.path}?{joined}continuationToken={token}"
                )
        elif self.end_style == "null":
            body["continuationToken"] = None
            body["continuationUri"] = None
        return Response.json(body, headers={"requestId": secrets.token_hex(8)})

    def _error_body(self, code: str, message: str, *, retriable: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "errorCode": code,
            "message": message,
            "requestId": secrets.token_hex(8),
        }
        if retriable:
            body["isRetriable"] = True
        return body

    def _error(self, status: int, code: str, message: str) -> Response:
        body = self._error_body(code, message)
        return Response.json(body, status=status, headers={"requestId": body["requestId"]})


def _in_folder(items: list[Item], root: str | None, recursive: str | None) -> list[Item]:
    """``rootFolderId`` and ``recursive`` (folders are flat here: one level)."""
    if recursive is not None and recursive.lower() == "false":
        return [i for i in items if i.folderId == root]
    return [i for i in items if root is None or i.folderId == root]
