"""Microsoft Entra ID (``type: msgraph``): users, groups and group memberships, through Microsoft
Graph delta queries (shared/api-contracts.md §3).

    config.py      the connection and the job in highmark.yml
    api.py         delta pages: links followed verbatim, to the connection's host only
    entities.py    the target tables, and Graph objects as rows
    pages.py       a delta page folded into target changes (replays, member slices, removals)
    checkpoint.py  checkpoint_data (the reference's keys; delta links kept between runs)
    mover.py       the rounds: delta or full, resync with mark-and-sweep, marks per round
    check.py       `highmark check`: a token, and the permissions of each delta query

Credentials (client credentials or a ready token) are highmark/connectors/microsoft.py's.
"""

from highmark.connectors.msgraph.config import MsGraphConnection as CONNECTION
from highmark.connectors.msgraph.config import MsGraphJobSpec as JOB

__all__ = ["CONNECTION", "JOB"]
