"""A fake Microsoft Fabric REST API (workspaces and items) on 127.0.0.1 for the Fabric
connector's tests.

::

    with FakeEntra() as entra, FakeFabric(entra.issuer, page_size=2) as fabric:
        sales = fabric.add_workspace("Sales")
        model = fabric.add_item(sales, "Revenue", type="SemanticModel")
        fabric.before(4, lambda: fabric.revoke(sales.id))
        ...  # point the connector at fabric.fabric_url, authority entra.url

Modules: :mod:`.server` (routing, auth, listings, faults), :mod:`.paging` (continuation tokens),
:mod:`.model` (the tenant).
"""

from .model import Item, Tenant, Workspace
from .paging import ContinuationBook, TokenError
from .server import FakeFabric

__all__ = ["ContinuationBook", "FakeFabric", "Item", "Tenant", "TokenError", "Workspace"]
