"""Microsoft Fabric's list endpoints as the connector uses them (shared/api-contracts.md §4):
``/workspaces`` and ``/workspaces/{id}/items``, pages chained by ``continuationUri`` (followed
verbatim) or, when only the token comes, by ``continuationToken`` passed through as it arrived —
already percent-encoded, never encoded twice; Fabric's clock from the ``Date`` header."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

from highmark import clock
from highmark.connectors import classifiers
from highmark.connectors.fabric.config import FabricConnection
from highmark.connectors.http import ApiClient
from highmark.connectors.microsoft import close_auth, same_origin
from highmark.errors import ApiError


class FabricApi:
    def __init__(
        self,
        name: str,
        connection: FabricConnection,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.name = name
        self.base = connection.url
        self.auth = connection.make_auth(name, sleep=sleep)
        self.http = ApiClient(
            "fabric",
            connection.url,
            auth=self.auth,
            credential=connection.credential(name),
            classify=classifiers.fabric,
            sleep=sleep,
        )
        self.server_now: datetime | None = None

    def workspaces_url(self) -> str:
        return f"{self.base}/workspaces"

    def workspace_url(self, workspace_id: str) -> str:
        return f"{self.base}/workspaces/{quote(workspace_id, safe='')}"

    def items_url(self, workspace_id: str, item_type: str | None) -> str:
        url = f"{self.workspace_url(workspace_id)}/items"
        return f"{url}?type={quote(item_type, safe='')}" if item_type else url

    def get(self, url: str) -> dict[str, Any]:
        """One answer (a listing page: ``value`` and maybe a continuation). ``url`` is sent as
        given, and only to the connection's own host."""
        if not same_origin(url, self.base):
            raise ApiError(
                f"fabric: a continuation of connection '{self.name}' points at "
                f"{urlsplit(url).netloc}, not at {urlsplit(self.base).netloc}: highmark sends its "
                "token nowhere else",
                retryable=False,
                service="fabric",
            )
        reply = self.http.exchange("GET", url)
        date = reply.headers.get("date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                self.server_now = clock.ensure_utc(parsedate_to_datetime(date))
        body = reply.body
        if not isinstance(body, dict):
            raise ApiError(
                "fabric: an answer that is not a JSON object",
                retryable=True,
                service="fabric",
                status=reply.status,
            )
        return body

    def page(self, url: str) -> dict[str, Any]:
        body = self.get(url)
        if not isinstance(body.get("value"), list):
            raise ApiError(
                "fabric: a listing page without a value list",
                retryable=True,
                service="fabric",
            )
        return body

    @staticmethod
    def next_url(first: str, body: dict[str, Any]) -> str | None:
        """The next page of the listing ``first`` began, or None at its end (both fields absent,
        null or empty)."""
        uri = body.get("continuationUri")
        if isinstance(uri, str) and uri:
            return uri
        token = body.get("continuationToken")
        if not isinstance(token, str) or not token:
            return None
        # The token comes percent-encoded: pass it through, encoding only what is not yet.
        joiner = "&" if "?" in first else "?"
        return f"{first}{joiner}continuationToken={quote(token, safe='%')}"

    def now(self) -> datetime:
        """Fabric's clock as of the last answer (this machine's clock before any)."""
        return self.server_now or clock.now()

    def close(self) -> None:
        self.http.close()
        close_auth(self.auth)
