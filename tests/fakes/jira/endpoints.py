"""The fake's endpoints other than search: who am I, project lookup, permissions, one issue, an
issue's comments, and bulk fetch. They all read the *current* issues, not the lagging index.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.fakes.base import LoggedRequest, Response

from .model import Issue, User
from .render import Renderer, select_fields

if TYPE_CHECKING:
    from .server import FakeJira

MAX_BULKFETCH = 100
DEFAULT_COMMENTS = 5000
ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
PERMISSIONS = {
    "BROWSE_PROJECTS": ("10", "Browse Projects", "Ability to browse projects and their issues."),
    "CREATE_ISSUES": ("11", "Create Issues", "Ability to create issues."),
    "EDIT_ISSUES": ("12", "Edit Issues", "Ability to edit issues."),
    "ADD_COMMENTS": ("15", "Add Comments", "Ability to comment on issues."),
    "ADMINISTER_PROJECTS": ("23", "Administer Projects", "Ability to administer a project."),
    "ADMINISTER": ("0", "Administer Jira", "Jira administrators."),
}


def error(status: int, *messages: str, headers: dict[str, str] | None = None) -> Response:
    return Response.json({"errorMessages": list(messages), "errors": {}}, status, headers)


def myself(fake: FakeJira, request: LoggedRequest, user: User, renderer: Renderer) -> Response:
    body = renderer.user(user)
    body.update({"locale": "en_US", "groups": {"size": 1, "items": []}})
    return Response.json(body)


def project(
    fake: FakeJira, request: LoggedRequest, user: User, renderer: Renderer, ref: str
) -> Response:
    found = fake.site.project(ref)
    if found is None or not user.can_browse(found.key):
        kind = "id" if ref.isdigit() else "key"
        return error(404, f"No project could be found with {kind} '{ref}'.")
    return Response.json(renderer.project(found))


def my_permissions(
    fake: FakeJira, request: LoggedRequest, user: User, renderer: Renderer
) -> Response:
    wanted = [p.strip() for p in (request.param("permissions") or "").split(",") if p.strip()]
    if not wanted:
        return error(400, "The 'permissions' query parameter is required.")
    unknown = [p for p in wanted if p not in PERMISSIONS]
    if unknown:
        return error(404, f"The permission key '{unknown[0]}' does not exist.")
    ref = request.param("projectKey") or request.param("projectId")
    if ref is not None:
        found = fake.site.project(ref)
        if found is None or not user.can_browse(found.key):
            kind = "id" if ref.isdigit() else "key"
            return error(404, f"No project could be found with {kind} '{ref}'.")
        browse = True
    else:
        browse = any(user.can_browse(key) for key in fake.site.projects)
    body: dict[str, Any] = {}
    for key in wanted:
        pid, name, description = PERMISSIONS[key]
        body[key] = {
            "id": pid,
            "key": key,
            "name": name,
            "type": "PROJECT" if key != "ADMINISTER" else "GLOBAL",
            "description": description,
            "havePermission": browse and key == "BROWSE_PROJECTS",
        }
    return Response.json({"permissions": body})


def _visible(fake: FakeJira, user: User, ref: str) -> Issue | None:
    issue = fake.site.issue(ref)
    if issue is None or issue.deleted or not user.can_browse(issue.project):
        return None
    return issue


def issue(
    fake: FakeJira, request: LoggedRequest, user: User, renderer: Renderer, ref: str
) -> Response:
    found = _visible(fake, user, ref)
    if found is None:
        return error(404, ISSUE_NOT_FOUND)
    fields = select_fields(request.query.get("fields", []), default="*all")
    return Response.json(renderer.issue(found, found.state, fields))


def comments(
    fake: FakeJira, request: LoggedRequest, user: User, renderer: Renderer, ref: str
) -> Response:
    found = _visible(fake, user, ref)
    if found is None:
        return error(404, ISSUE_NOT_FOUND)
    try:
        start = int(request.param("startAt") or 0)
        asked = int(request.param("maxResults") or DEFAULT_COMMENTS)
    except ValueError:
        return error(400, "startAt and maxResults must be integers.")
    if start < 0 or asked < 0:
        return error(400, "startAt and maxResults must not be negative.")
    size = min(asked, fake.comment_page_cap)
    order = (request.param("orderBy") or "created").lstrip("+")
    ordered = sorted(found.comments, key=lambda c: (c.created_ms, int(c.id)))
    if order == "-created":
        ordered.reverse()
    elif order != "created":
        return error(400, f"orderBy '{order}' is not supported: use created or -created.")
    page = ordered[start : start + size]
    return Response.json(
        {
            "startAt": start,
            "maxResults": size,
            "total": len(ordered),
            "comments": [renderer.comment(found, c) for c in page],
        }
    )


def bulkfetch(fake: FakeJira, request: LoggedRequest, user: User, renderer: Renderer) -> Response:
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        return error(400, "Unexpected character in the request body: it is not JSON.")
    refs = payload.get("issueIdsOrKeys") if isinstance(payload, dict) else None
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str | int) for r in refs):
        return error(400, "issueIdsOrKeys must be a non-empty array of issue ids or keys.")
    if len(refs) > MAX_BULKFETCH:
        return error(400, f"A maximum of {MAX_BULKFETCH} issues can be fetched at a time.")
    raw_fields = payload.get("fields", ["*navigable"])
    if not isinstance(raw_fields, list) or not all(isinstance(f, str) for f in raw_fields):
        return error(400, "'fields' must be an array of strings.")
    fields = select_fields(raw_fields, default="*navigable")
    found: dict[int, Issue] = {}
    for ref in refs:
        hit = _visible(fake, user, str(ref))
        if hit is not None:
            found[int(hit.id)] = hit
    issues, errors = [], []
    for issue_id in sorted(found):
        hit = found[issue_id]
        message = fake.take_bulkfetch_error(hit)
        if message is not None:
            errors.append({"id": hit.id, "errorMessage": message})
        else:
            issues.append(renderer.issue(hit, hit.state, fields))
    return Response.json({"expand": "schema,names", "issues": issues, "issueErrors": errors})
