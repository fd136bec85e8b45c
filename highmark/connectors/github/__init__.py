"""GitHub (``type: github``): pull requests of repositories, with their commits, reviews and
conversation comments, through the GraphQL API (shared/api-contracts.md §1).

    config.py      the connection and the job in highmark.yml
    api.py         the GraphQL endpoint: queries in, data out, GitHub's clock, its errors
    budget.py      the token's point budget: wait for the reset rather than be refused
    queries.py     the queries, and nodes as rows
    entities.py    the target tables
    checkpoint.py  checkpoint_data (the reference's keys)
    mover.py       the sync: pages newest-first, nested pages, marks per repository
    check.py       `highmark check`: token, scopes, repositories
"""

from highmark.connectors.github.config import GitHubConnection as CONNECTION
from highmark.connectors.github.config import GitHubJobSpec as JOB

__all__ = ["CONNECTION", "JOB"]
