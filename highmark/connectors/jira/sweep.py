"""Issues deleted in Jira, found by a full refresh: the one way to see them.

A search never returns a deleted issue, and Jira has no change feed of deletions a REST client can
read (shared/api-contracts.md §2: "Deletes are invisible to a JQL incremental sync"). So a full
refresh, before it searches a project again, lists the ids the job's own search matches now —
``fields=id``, the largest pages Jira serves — and removes from ``<prefix>issues`` the project's
rows whose ids it did not list: issues deleted, moved to a project the job does not load, or no
longer matched by the job's ``jql``. The target then holds what the job's search returns.

An issue updated meanwhile is still listed (the index serves its previous version until it catches
up), and one created meanwhile was never stored, so neither is removed by mistake. The ids of one
project are held in memory: about 80 bytes an issue, 80 MB for a million.
"""

from __future__ import annotations

from collections.abc import Callable

from highmark.connectors.jira.api import JiraApi
from highmark.destinations.entities import EntityChanges
from highmark.destinations.records import RecordWriter
from highmark.errors import SourceError

# Jira's documented maximum page; it serves ids-only pages far larger than pages of whole issues.
ID_PAGE = 5000


def listed_ids(api: JiraApi, jql: str, project: str, check: Callable[[], None]) -> set[str]:
    """Every issue id the search ``jql`` matches, page by page (``check`` between pages)."""
    ids: set[str] = set()
    token: str | None = None
    sent: set[str] = set()
    while True:
        check()
        page = api.search(jql, ["id"], ID_PAGE, token)
        ids.update(str(issue["id"]) for issue in page.get("issues") or [])
        token = page.get("nextPageToken") or None
        if page.get("isLast") or not token:
            return ids
        if token in sent:
            raise SourceError(
                f"jira: the id listing of {project} came back to a page it had served: stopped "
                "rather than loop",
                retryable=True,
                project=project,
            )
        sent.add(token)


def removed_keys(writer: RecordWriter, project: str, listed: set[str]) -> list[tuple[str, ...]]:
    """The keys of the project's stored issues that the listing no longer has."""
    return [key for key in writer.keys("issues", {"project": project}) if key[0] not in listed]


def sweep_project(
    api: JiraApi, writer: RecordWriter, project: str, jql: str, check: Callable[[], None]
) -> int:
    """Remove the project's stored issues that its search no longer returns; their count."""
    gone = removed_keys(writer, project, listed_ids(api, jql, project, check))
    if not gone:
        return 0
    return writer.write([EntityChanges("issues", deletes=gone)]).rows_deleted
