"""A fake Microsoft identity platform (the client-credentials token endpoint) for the Graph and
Fabric connectors' tests.

::

    with FakeEntra() as entra, FakeGraph(issuer=entra.issuer) as graph:
        ...  # authority: entra.url, tenant TENANT, client CLIENT_ID / CLIENT_SECRET
        assert len(entra.token_requests) == 1
"""

from .server import FakeEntra
from .tokens import CLIENT_ID, CLIENT_SECRET, LIFETIME, TENANT, IssuedToken, TokenIssuer

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "LIFETIME",
    "TENANT",
    "FakeEntra",
    "IssuedToken",
    "TokenIssuer",
]
