"""The Microsoft identity platform, shared by ``type: msgraph`` and ``type: fabric`` connections:
their credentials in the project file, and the access token a connector sends
(shared/api-contracts.md §5.1).

A connection has either client credentials — ``tenant_id``, ``client_id``, ``client_secret``: a
token is fetched from ``{authority}/{tenant_id}/oauth2/v2.0/token`` with the client-credentials
grant for the API's ``/.default`` scope, cached until shortly before it expires and fetched anew
once when the API answers 401 — or a ready bearer ``token`` (a managed identity's, or one acquired
elsewhere), sent as is. Graph and Fabric are two resources, so they need two tokens: a connection
fetches its own. The secret and every token are registered for masking the moment they are known.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import quote, urlsplit

from pydantic import Field, field_validator, model_validator

from highmark.config.common import KeyedError
from highmark.config.connections import ApiConnectionSpec, secret
from highmark.connectors.auth import Auth, BearerAuth, NoAuth, Token, TokenAuth
from highmark.connectors.http import ApiClient
from highmark.connectors.retry import Reply, Verdict
from highmark.errors import ApiError

__all__ = [
    "DEFAULT_AUTHORITY",
    "ClientCredentialsAuth",
    "MicrosoftConnection",
    "TokenIssuer",
    "close_auth",
    "origin",
    "same_origin",
    "token_tenant",
]

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$"  # a GUID or a domain name
# A token is fetched anew this long before it expires.
TOKEN_MARGIN = timedelta(minutes=5)
Sleep = Callable[[float], None]


class MicrosoftConnection(ApiConnectionSpec):
    """An API of Microsoft's cloud, reached with an Entra ID app's client credentials or a ready
    bearer token. ``scope`` defaults to the API's ``/.default`` (its URL's origin)."""

    tenant_id: str | None = Field(default=None, pattern=TENANT_PATTERN)
    client_id: str | None = None
    client_secret: str | None = Field(default=None, repr=False)
    token: str | None = Field(default=None, repr=False)
    authority: str = DEFAULT_AUTHORITY
    scope: str | None = None

    @field_validator("client_secret", "token")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return secret(value)

    @field_validator("authority")
    @classmethod
    def _authority(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> MicrosoftConnection:
        if self.token is not None:
            for key in ("client_id", "client_secret"):
                if getattr(self, key) is not None:
                    raise KeyedError((key,), "give either a token or client credentials, not both")
            return self
        for key in ("tenant_id", "client_id", "client_secret"):
            if not getattr(self, key):
                raise KeyedError(
                    (key,),
                    "missing: client credentials need tenant_id, client_id and client_secret "
                    "(or give a ready bearer token instead)",
                )
        return self

    def default_scope(self) -> str:
        return self.scope or f"{origin(self.url)}/.default"

    def tenant(self) -> str:
        """The directory the connection reads: ``tenant_id``, else the token's ``tid`` claim."""
        if self.tenant_id:
            return self.tenant_id
        return token_tenant(self.token or "") or "unknown"

    def make_auth(self, name: str, *, sleep: Sleep | None = None) -> Auth:
        """The credentials a connector's client sends (see the module docstring)."""
        if self.token is not None:
            return BearerAuth(self.token)
        assert self.tenant_id and self.client_id and self.client_secret
        issuer = TokenIssuer(
            name, self.authority, self.tenant_id, self.client_id, self.client_secret,
            self.default_scope(), sleep=sleep,
        )  # fmt: skip
        return ClientCredentialsAuth(issuer)

    def credential(self, name: str) -> str:
        """Which credential a refusal is about, for messages."""
        if self.token is not None:
            return f"the token of connection '{name}'"
        return f"the app {self.client_id} of connection '{name}' (tenant {self.tenant_id})"


class TokenIssuer:
    """Fetches access tokens with the client-credentials grant from one tenant's endpoint."""

    def __init__(
        self,
        name: str,
        authority: str,
        tenant: str,
        client_id: str,
        client_secret: str,
        scope: str,
        *,
        sleep: Sleep | None = None,
    ) -> None:
        self.path = f"/{quote(tenant, safe='')}/oauth2/v2.0/token"
        self.form = {
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": scope,
            "grant_type": "client_credentials",
        }
        self.http = ApiClient(
            "entra",
            authority,
            auth=NoAuth(),
            credential=f"the client id and secret of connection '{name}'",
            classify=_token_endpoint,
            sleep=sleep,
        )

    def fetch(self) -> Token:
        body = self.http.post_json(self.path, data=self.form)
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise ApiError(
                "entra: the token endpoint answered without an access_token",
                retryable=True,
                service="entra",
            )
        try:
            lifetime = float(body.get("expires_in", 3599))
        except (TypeError, ValueError):
            lifetime = 3599.0
        return Token(access, expires_in=lifetime)


class ClientCredentialsAuth(TokenAuth):
    """A token fetched by a :class:`TokenIssuer`; :meth:`close` closes the issuer's client."""

    def __init__(self, issuer: TokenIssuer) -> None:
        super().__init__(issuer.fetch, margin=TOKEN_MARGIN)
        self.issuer = issuer

    def close(self) -> None:
        self.issuer.http.close()


def close_auth(auth: Auth) -> None:
    """Close what an :class:`Auth` from :meth:`MicrosoftConnection.make_auth` holds open."""
    if isinstance(auth, ClientCredentialsAuth):
        auth.close()


def _token_endpoint(reply: Reply) -> Verdict | None:
    """OAuth errors of the token endpoint (400/401 ``invalid_client``…) are permanent: the
    credential, the tenant or the app's consent must be fixed by a human."""
    if reply.status in (400, 401) and isinstance(reply.body, dict) and "error" in reply.body:
        kind = str(reply.body.get("error"))
        hint = {
            "invalid_client": "the client id or secret is wrong, or the secret expired",
            "unauthorized_client": "the app is not enabled for this tenant",
            "invalid_scope": "the scope is not the API's /.default",
            "invalid_request": "the tenant id may be wrong",
        }.get(kind, "")
        text = f"{reply.status} {reply.message}: {reply.credential} was refused"
        return Verdict.permanent(f"{text} ({hint})" if hint else text)
    return None


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` (an ``@odata.nextLink``, a ``continuationUri``) points at the API the
    connection names: the bearer token is never sent anywhere else."""
    return origin(url).lower() == origin(base).lower()


def token_tenant(token: str) -> str | None:
    """The ``tid`` claim of an Entra access token (a JWT), unverified; None if it has none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        return None
    tid = claims.get("tid") if isinstance(claims, dict) else None
    return tid if isinstance(tid, str) and tid else None
