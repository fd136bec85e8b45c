"""Ready-made classifiers for the APIs highmark reads (see shared/api-contracts.md §1.5, §2.5,
§3.6, §4.5 and §6).

Each judges only what the default rules (:func:`highmark.connectors.retry.default_verdict`) get
wrong or say too vaguely for its service, and returns None for the rest. A connector passes one
to its :class:`~highmark.connectors.http.ApiClient`, or :func:`~highmark.connectors.retry.chain`s
its own in front. Answers a connector must act on itself (GitHub ``NOT_FOUND`` or a partial
``data`` in a 200, Graph ``syncStateNotFound``) are not retried here: the first comes back as an
answer, the second as a permanent :class:`~highmark.errors.ApiError` whose ``code`` says which.
"""

from __future__ import annotations

from typing import Any

from highmark.connectors.retry import Reply, Verdict, epoch_header, iso_header

__all__ = ["fabric", "github", "graph", "jira"]

# GitHub: the types of a primary rate-limit error in a GraphQL body (both spellings are seen).
GITHUB_RATE_LIMIT_TYPES = frozenset({"RATE_LIMITED", "RATE_LIMIT"})
# GitHub: the least wait after a secondary limit that names no time.
GITHUB_SECONDARY_WAIT = 60.0
# Microsoft Graph: the application permission a path needs (least privileged), by its first
# segment after the version.
GRAPH_PERMISSIONS = {
    "users": "User.Read.All",
    "groups": "Group.Read.All",
    "applications": "Application.Read.All",
    "servicePrincipals": "Application.Read.All",
    "devices": "Device.Read.All",
    "directoryRoles": "RoleManagement.Read.Directory",
}
GRAPH_RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired"})


def github(reply: Reply) -> Verdict | None:
    """GitHub (GraphQL and REST): primary and secondary rate limits in whatever status they come,
    timeouts, and 403s that name the token's scopes."""
    status, headers = reply.status, reply.headers
    errors = _github_errors(reply.body)
    types = {str(e.get("type")) for e in errors}
    text = " ".join(str(e.get("message", "")) for e in errors)
    if isinstance(reply.body, dict) and isinstance(reply.body.get("message"), str):
        text += " " + reply.body["message"]
    text = text.lower()
    reset = epoch_header(headers, "x-ratelimit-reset")

    if limit := types & GITHUB_RATE_LIMIT_TYPES:
        return Verdict.retry(f"{status} rate limit exceeded ({min(limit)})", until=reset)
    if status in (200, 403, 429) and "secondary rate limit" in text:
        reason = f"{status} secondary rate limit"
        if "retry-after" in headers:
            return Verdict.retry(reason)
        if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
            return Verdict.retry(reason, until=reset)
        return Verdict.retry(reason, at_least=GITHUB_SECONDARY_WAIT)
    if status in (403, 429) and (
        "rate limit" in text or headers.get("x-ratelimit-remaining") == "0"
    ):
        reason = f"{status} rate limit exceeded"
        if "retry-after" not in headers and reset is not None:
            return Verdict.retry(reason, until=reset)
        return Verdict.retry(reason, at_least=GITHUB_SECONDARY_WAIT)
    if status == 403:
        return Verdict.permanent(reply.forbidden(_github_scopes(reply)))
    if status in (502, 504):
        return Verdict.retry(f"{status} GitHub did not answer in time (a costly query?)")
    return None


def jira(reply: Reply) -> Verdict | None:
    """Jira Cloud: 429 and 503 name the limit that fired (``RateLimit-Reason``); a 429 without
    ``Retry-After`` waits for ``X-RateLimit-Reset``; 410 is an endpoint Atlassian removed."""
    status, headers = reply.status, reply.headers
    if status in (429, 503):
        why = headers.get("ratelimit-reason") or headers.get("x-beta-ratelimit-reason")
        reason = f"{status} {reply.message}" + (f" ({why})" if why else "")
        until = None
        if status == 429 and "retry-after" not in headers:
            until = iso_header(headers, "x-ratelimit-reset")
        return Verdict.retry(reason, until=until)
    if status == 410:
        return Verdict.permanent(
            f"410 {reply.message}: Atlassian removed {reply.method} {reply.path} "
            "(highmark must move to its successor)"
        )
    return None


def graph(reply: Reply) -> Verdict | None:
    """Microsoft Graph: throttling (429/503/504, with the ``x-ms-throttle-*`` scope in the log),
    a missing application permission named, and delta tokens that need a full resync."""
    status, headers, code = reply.status, reply.headers, (reply.code or "")
    if status in (429, 503, 504):
        reason = f"{status} {code or reply.message}"
        scope = headers.get("x-ms-throttle-scope")
        information = headers.get("x-ms-throttle-information")
        if scope or information:
            reason += f" (throttled: {', '.join(v for v in (scope, information) if v)})"
        return Verdict.retry(reason)
    if status == 403 and code.lower() == "authorization_requestdenied":
        segment = _graph_segment(reply.path)
        permission = GRAPH_PERMISSIONS.get(segment, "an application permission")
        return Verdict.permanent(
            reply.forbidden(f"it needs {permission}, granted to the app with admin consent")
        )
    if code.lower() in GRAPH_RESYNC_CODES:
        return Verdict.permanent(
            f"{status} {reply.message}: the delta token is no longer valid, a full resync is due"
        )
    return None


def fabric(reply: Reply) -> Verdict | None:
    """Microsoft Fabric: ``isRetriable: true`` in an error body retries whatever the status; a
    403 says what a service principal needs."""
    body = reply.body
    if isinstance(body, dict) and body.get("isRetriable") is True:
        return Verdict.retry(f"{reply.status} {reply.message} (isRetriable)")
    if reply.status == 430:  # TooManyRequestsForCapacity
        return Verdict.retry(f"430 {reply.message}")
    if reply.status == 403:
        return Verdict.permanent(
            reply.forbidden(
                "a service principal needs the tenant setting that lets it use Fabric APIs and "
                "a role in the workspace"
            )
        )
    return None


def _github_errors(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return []
    return [e for e in body["errors"] if isinstance(e, dict)]


def _github_scopes(reply: Reply) -> str:
    granted = reply.headers.get("x-oauth-scopes")
    accepted = reply.headers.get("x-accepted-oauth-scopes")
    parts = []
    if granted is not None:
        parts.append(f"its scopes: {granted.strip() or 'none'}")
    if accepted:
        parts.append(f"accepted here: {accepted.strip()}")
    return "; ".join(parts)


def _graph_segment(path: str) -> str:
    """``users`` from ``/v1.0/users/delta``."""
    segments = [s for s in path.split("/") if s]
    if segments and segments[0] in ("v1.0", "beta"):
        segments = segments[1:]
    return segments[0] if segments else ""
