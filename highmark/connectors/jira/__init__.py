"""Jira Cloud (``type: jira``): issues of projects, through ``/rest/api/3/search/jql``
(shared/api-contracts.md §2).

    config.py      the connection and the job in highmark.yml
    api.py         the REST API: the user (and time zone), projects, search pages, Jira's clock
    issues.py      the JQL (minute precision, the user's zone, DST) and issues as rows
    checkpoint.py  checkpoint_data (the reference's keys; next_page_token for start_at)
    mover.py       the sync: search pages per project, marks per project
    check.py       `highmark check`: credentials, projects, JQL
"""

from highmark.connectors.jira.config import JiraConnection as CONNECTION
from highmark.connectors.jira.config import JiraJobSpec as JOB

__all__ = ["CONNECTION", "JOB"]
