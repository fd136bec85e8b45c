"""A fake Microsoft Graph (users and groups delta queries) on 127.0.0.1 for the Entra ID
connector's tests.

::

    with FakeEntra() as entra, FakeGraph(entra.issuer, page_size=3) as graph:
        alice = graph.directory.add_user(displayName="Alice")
        graph.before(3, lambda: graph.directory.update("users", alice.id, jobTitle="CTO"))
        graph.throttle(on_request=2, retry_after=None)
        ...  # point the connector at graph.graph_url, authority entra.url

Modules: :mod:`.server` (routing, auth, faults), :mod:`.rounds` (rounds, state tokens,
rendering), :mod:`.model` (the directory and its change log).
"""

from .model import Change, Directory, DirectoryObject
from .rounds import DeltaState, Entry, Round
from .server import EXPIRED, TOKEN_TTL, FakeGraph

__all__ = [
    "EXPIRED",
    "TOKEN_TTL",
    "Change",
    "DeltaState",
    "Directory",
    "DirectoryObject",
    "Entry",
    "FakeGraph",
    "Round",
]
