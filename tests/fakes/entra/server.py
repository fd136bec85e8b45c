"""``FakeEntra``: the Microsoft identity platform's token endpoint on 127.0.0.1
(shared/api-contracts.md §5.1), with the client-credentials grant only.

``POST /{tenant}/oauth2/v2.0/token`` with a form (``client_id``, ``client_secret``, ``scope``
ending in ``/.default``, ``grant_type=client_credentials``) answers
``{"token_type": "Bearer", "expires_in": …, "access_token": …}``, or Entra's OAuth errors:
``invalid_request`` (unknown tenant, 400), ``invalid_client`` (bad secret, 401),
``invalid_scope`` (400), ``unsupported_grant_type`` (400). The OpenID configuration is served
too, for clients that discover the endpoint.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from urllib.parse import parse_qs

from tests.fakes.base import FakeClock, FakeServer, LoggedRequest, Response

from .tokens import TokenIssuer

_TOKEN = re.compile(r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token")
_OPENID = re.compile(r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration")


class FakeEntra(FakeServer):
    """A token endpoint over a :class:`TokenIssuer` (``issuer``) that API fakes share."""

    def __init__(self, *, clock: FakeClock | None = None, lifetime: int | None = None) -> None:
        super().__init__(clock=clock)
        self.issuer = (
            TokenIssuer(self.clock)
            if lifetime is None
            else TokenIssuer(self.clock, lifetime=lifetime)
        )

    @property
    def token_requests(self) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path.endswith("/oauth2/v2.0/token")]

    def handle(self, request: LoggedRequest) -> Response:
        if request.method == "GET" and (found := _OPENID.fullmatch(request.path)):
            tenant = found["tenant"]
            return Response.json(
                {
                    "issuer": f"{self.url}/{tenant}/v2.0",
                    "token_endpoint": f"{self.url}/{tenant}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{self.url}/{tenant}/oauth2/v2.0/authorize",
                }
            )
        found = _TOKEN.fullmatch(request.path)
        if request.method != "POST" or found is None:
            return Response.json({"error": "not_found"}, status=404)
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        issuer = self.issuer
        if found["tenant"] != issuer.tenant:
            return self._error(
                400, "invalid_request", 90002, f"Tenant '{found['tenant']}' not found."
            )
        if form.get("grant_type") != "client_credentials":
            return self._error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client = form.get("client_id", "")
        if client not in issuer.clients:
            return self._error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client}' was not found.",
            )
        if form.get("client_secret") != issuer.clients[client]:
            return self._error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in "
                "the request is the client secret value, not the client secret "
                "ID.",
            )
        scope = form.get("scope", "")
        if not scope.endswith("/.default") or " " in scope.strip():
            return self._error(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not "
                f"valid. The scope {scope} is not valid.",
            )
        token = issuer.issue(client, scope.removesuffix("/.default"))
        lifetime = int((token.expires_at - self.clock.now()) / timedelta(seconds=1))
        return Response.json(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token.value,
            }
        )

    def _error(self, status: int, error: str, code: int, text: str) -> Response:
        trace = secrets.token_hex(16)
        return Response.json(
            {
                "error": error,
                "error_description": f"AADSTS{code}: {text} Trace ID: {trace}",
                "error_codes": [code],
                "timestamp": self.clock.now().strftime("%Y-%m-%d %H:%M:%SZ"),
                "trace_id": trace,
                "correlation_id": secrets.token_hex(16),
            },
            status=status,
        )
