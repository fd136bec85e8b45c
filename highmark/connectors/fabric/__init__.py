"""Microsoft Fabric (``type: fabric``): workspaces and their items — semantic models, the
reference's "datasets", are items of type ``SemanticModel`` — through the Fabric REST API
(shared/api-contracts.md §4).

    config.py      the connection and the job in highmark.yml
    api.py         the listings: continuationUri followed verbatim, tokens never encoded twice
    entities.py    the target tables, and listings as rows
    checkpoint.py  checkpoint_data (the reference's keys)
    mover.py       a snapshot per run, diffed: inserts, updates, deletes from complete listings
    check.py       `highmark check`: a token, the tenant setting, the workspaces

Credentials (client credentials or a ready token) are highmark/connectors/microsoft.py's.
"""

from highmark.connectors.fabric.config import FabricConnection as CONNECTION
from highmark.connectors.fabric.config import FabricJobSpec as JOB

__all__ = ["CONNECTION", "JOB"]
