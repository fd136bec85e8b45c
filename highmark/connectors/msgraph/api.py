"""Microsoft Graph's delta queries as the connector uses them: the first request of a round with
its ``$select``, then ``@odata.nextLink`` / ``@odata.deltaLink`` followed verbatim (the query
parameters are encoded in their state tokens, shared/api-contracts.md §3.2); Graph's clock from
the ``Date`` header."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from highmark import clock
from highmark.connectors import classifiers
from highmark.connectors.http import ApiClient
from highmark.connectors.microsoft import close_auth, same_origin
from highmark.connectors.msgraph.config import MsGraphConnection
from highmark.errors import ApiError

# A sync is background work: Graph throttles low-priority requests first, and says so.
HEADERS = {"x-ms-throttle-priority": "Low"}


class GraphApi:
    def __init__(
        self,
        name: str,
        connection: MsGraphConnection,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.name = name
        self.base = connection.url
        self.auth = connection.make_auth(name, sleep=sleep)
        self.http = ApiClient(
            "msgraph",
            connection.url,
            auth=self.auth,
            credential=connection.credential(name),
            classify=classifiers.graph,
            sleep=sleep,
            headers=HEADERS,
        )
        self.server_now: datetime | None = None

    def start_url(self, entity: str, select: str, *, latest: bool = False) -> str:
        """The first request of a full round of ``entity`` (``users``, ``groups``); with
        ``latest``, a round that returns no objects, only a delta link (``check``)."""
        url = f"{self.base}/{entity}/delta?$select={select}"
        return url + "&$deltatoken=latest" if latest else url

    def page(self, url: str) -> dict[str, Any]:
        """One page of a round: ``value`` and either ``@odata.nextLink`` or ``@odata.deltaLink``.
        ``url`` is sent exactly as Graph gave it, and only to the connection's own host."""
        if not same_origin(url, self.base):
            raise ApiError(
                f"msgraph: a link of connection '{self.name}' points at {urlsplit(url).netloc}, "
                f"not at {urlsplit(self.base).netloc}: highmark sends its token nowhere else",
                retryable=False,
                service="msgraph",
            )
        reply = self.http.exchange("GET", url)
        date = reply.headers.get("date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                self.server_now = clock.ensure_utc(parsedate_to_datetime(date))
        body = reply.body
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise ApiError(
                "msgraph: a delta page without a value list",
                retryable=True,
                service="msgraph",
                status=reply.status,
            )
        return body

    def now(self) -> datetime:
        """Graph's clock as of the last answer (this machine's clock before any)."""
        return self.server_now or clock.now()

    def close(self) -> None:
        self.http.close()
        close_auth(self.auth)
