"""Jira's JSON shapes: issues with their ``fields``, users, projects, statuses, issue types,
comments, and descriptions as Atlassian Document Format (v3 returns rich text as ADF, not
strings). Timestamps are rendered in the site's zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .dates import render as render_time
from .model import Comment, Issue, IssueState, Project, Site, User

NAVIGABLE = (
    "summary",
    "status",
    "issuetype",
    "assignee",
    "reporter",
    "priority",
    "labels",
    "created",
    "updated",
    "project",
    "description",
)
ALL_FIELDS = (*NAVIGABLE, "comment")
EMBEDDED_COMMENTS = 20  # search results carry at most this many comments
EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
_CATEGORIES = {
    "new": (2, "blue-gray", "To Do"),
    "indeterminate": (4, "yellow", "In Progress"),
    "done": (3, "green", "Done"),
}
_PRIORITIES = {"highest": "1", "high": "2", "medium": "3", "low": "4", "lowest": "5"}


@dataclass(frozen=True)
class FieldSelection:
    """Which fields to render: ``names`` go under ``fields``; ``ids_only`` renders ``{"id"}``."""

    names: tuple[str, ...]
    ids_only: bool
    requested: tuple[str, ...]  # as the client wrote them, split on commas

    @property
    def count(self) -> int:
        return len(self.names)


def select_fields(items: Iterable[str], default: str) -> FieldSelection:
    """Read a ``fields`` parameter: names, ``*all``, ``*navigable``, ``-name`` exclusions.
    Unknown names are ignored, as Jira does; exclusions alone start from ``*navigable``."""
    requested = tuple(t.strip() for item in items for t in item.split(",") if t.strip())
    tokens = list(requested or (default,))
    if all(t.startswith("-") for t in tokens):
        tokens.insert(0, "*navigable")
    include: list[str] = []
    exclude = {t[1:] for t in tokens if t.startswith("-")}
    for token in tokens:
        if token == "*all":
            include += ALL_FIELDS
        elif token == "*navigable":
            include += NAVIGABLE
        elif not token.startswith("-"):
            include.append(token)
    names = tuple(dict.fromkeys(n for n in include if n in ALL_FIELDS and n not in exclude))
    return FieldSelection(names, ids_only=not names and "key" not in include, requested=requested)


def adf(text: str | None) -> dict[str, Any] | None:
    """Plain text as an Atlassian Document Format document (one paragraph per line)."""
    if text is None:
        return None
    paragraphs = [
        {"type": "paragraph", "content": [{"type": "text", "text": line}] if line else []}
        for line in text.split("\n")
    ]
    return {"type": "doc", "version": 1, "content": paragraphs}


class Renderer:
    """Renders model objects for one request (``base`` is the URL prefix the client used)."""

    def __init__(self, site: Site, base: str, site_zone: str) -> None:
        self.site = site
        self.base = base
        self.zone = site_zone
        self._shared: dict[tuple[str, str], Any] = {}  # statuses, types, projects of one answer

    def _once(self, kind: str, name: str, make: Callable[[], Any]) -> Any:
        value = self._shared.get((kind, name))
        if value is None:
            value = self._shared[(kind, name)] = make()
        return value

    def time(self, ms: int) -> str:
        return render_time(ms, self.zone)

    def issue(self, issue: Issue, state: IssueState, fields: FieldSelection) -> dict[str, Any]:
        if fields.ids_only:
            return {"id": issue.id}
        values: dict[str, Any] = {}
        for name in fields.names:
            values[name] = self._field(name, issue, state)
        return {
            "expand": EXPAND,
            "id": issue.id,
            "self": f"{self.base}/rest/api/3/issue/{issue.id}",
            "key": issue.key,
            "fields": values,
        }

    def _field(self, name: str, issue: Issue, state: IssueState) -> Any:
        if name == "summary":
            return state.summary
        if name == "status":
            return self._once("status", state.status, lambda: self.status(state.status))
        if name == "issuetype":
            kind = state.issue_type
            return self._once("issuetype", kind, lambda: self.issue_type(kind))
        if name in ("assignee", "reporter"):
            account = state.assignee if name == "assignee" else state.reporter
            user = self.site.user(account) if account else None
            return (
                self._once("user", account, lambda: self.user(user)) if user and account else None
            )
        if name == "priority":
            pid = _PRIORITIES.get(state.priority.lower(), "3")
            return {
                "self": f"{self.base}/rest/api/3/priority/{pid}",
                "iconUrl": f"{self.base}/images/icons/priorities/{state.priority.lower()}.svg",
                "name": state.priority,
                "id": pid,
            }
        if name == "labels":
            return list(state.labels)
        if name == "created":
            return self.time(state.created_ms)
        if name == "updated":
            return self.time(state.updated_ms)
        if name == "project":
            project = self.site.projects[issue.project]
            return self._once("project", project.key, lambda: self.project_ref(project))
        if name == "description":
            return adf(state.description)
        comments = issue.comments
        return {
            "comments": [self.comment(issue, c) for c in comments[:EMBEDDED_COMMENTS]],
            "self": f"{self.base}/rest/api/3/issue/{issue.id}/comment",
            "maxResults": min(len(comments), EMBEDDED_COMMENTS),
            "total": len(comments),
            "startAt": 0,
        }

    def status(self, name: str) -> dict[str, Any]:
        status = self.site.status(name)
        cat_id, color, cat_name = _CATEGORIES[status.category]
        return {
            "self": f"{self.base}/rest/api/3/status/{status.id}",
            "description": "",
            "iconUrl": f"{self.base}/",
            "name": status.name,
            "id": status.id,
            "statusCategory": {
                "self": f"{self.base}/rest/api/3/statuscategory/{cat_id}",
                "id": cat_id,
                "key": status.category,
                "colorName": color,
                "name": cat_name,
            },
        }

    def issue_type(self, name: str) -> dict[str, Any]:
        kind = self.site.issue_type(name)
        return {
            "self": f"{self.base}/rest/api/3/issuetype/{kind.id}",
            "id": kind.id,
            "description": "",
            "iconUrl": f"{self.base}/rest/api/2/universal_avatar/view/type/issuetype/avatar/10318",
            "name": kind.name,
            "subtask": kind.subtask,
            "avatarId": 10318,
            "hierarchyLevel": kind.hierarchy_level,
        }

    def user(self, user: User) -> dict[str, Any]:
        avatar = f"https://avatar-management.example/{user.account_id}"
        return {
            "self": f"{self.base}/rest/api/3/user?accountId={user.account_id}",
            "accountId": user.account_id,
            "emailAddress": user.email,
            "avatarUrls": {size: f"{avatar}/{size}" for size in ("48x48", "24x24", "16x16")},
            "displayName": user.display_name,
            "active": True,
            "timeZone": user.time_zone or self.zone,
            "accountType": "atlassian",
        }

    def project_ref(self, project: Project) -> dict[str, Any]:
        return {
            "self": f"{self.base}/rest/api/3/project/{project.id}",
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "projectTypeKey": "software",
            "simplified": False,
        }

    def project(self, project: Project) -> dict[str, Any]:
        return {
            **self.project_ref(project),
            "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
            "description": "",
            "style": "classic",
            "isPrivate": False,
            "properties": {},
            "issueTypes": [self.issue_type(t.name) for t in self.site.issue_types.values()],
        }

    def comment(self, issue: Issue, comment: Comment) -> dict[str, Any]:
        author = self.site.user(comment.author)
        shown = self.user(author) if author else None
        return {
            "self": f"{self.base}/rest/api/3/issue/{issue.id}/comment/{comment.id}",
            "id": comment.id,
            "author": shown,
            "body": adf(comment.body),
            "updateAuthor": shown,
            "created": self.time(comment.created_ms),
            "updated": self.time(comment.updated_ms),
            "jsdPublic": True,
        }
