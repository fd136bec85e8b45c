"""`highmark check` for a GitHub job: the token works, has the scopes it needs, and sees every
repository."""

from __future__ import annotations

from highmark.config import ProjectConfig
from highmark.connectors.github import queries
from highmark.connectors.github.api import GitHubApi
from highmark.connectors.github.config import GitHubConnection, GitHubJobSpec
from highmark.errors import HighmarkError
from highmark.findings import Finding, Level

# A classic token reads private repositories with `repo` (public ones with `public_repo`).
READ_SCOPES = ("repo", "public_repo")


def check(config: ProjectConfig, job: GitHubJobSpec) -> list[Finding]:
    connection = config.connections[job.source.connection]
    assert isinstance(connection, GitHubConnection)
    name = job.source.connection
    findings: list[Finding] = []

    def add(check: str, level: Level, detail: str, fix: str = "") -> None:
        findings.append(Finding(job.job_id, check, level, detail, fix))

    api = GitHubApi(name, connection.url, connection.token)
    try:
        try:
            reply = api.http.exchange("POST", api.url, json={"query": queries.viewer_query()})
        except HighmarkError as exc:
            add("token", Level.FAIL, str(exc), f"set a valid token on connection '{name}'")
            return findings
        body = reply.body if isinstance(reply.body, dict) else {}
        login = ((body.get("data") or {}).get("viewer") or {}).get("login")
        add("token", Level.PASS, f"authenticated as {login}")
        scopes = reply.headers.get("x-oauth-scopes")
        if scopes is None:
            add("scopes", Level.WARN, "the token states no scopes (a fine-grained or app token): "
                "its repository access is checked below")  # fmt: skip
        elif any(s.strip() in READ_SCOPES for s in scopes.split(",")):
            add("scopes", Level.PASS, f"scopes: {scopes}")
        else:
            add("scopes", Level.FAIL, f"the token's scopes ({scopes or 'none'}) cannot read "
                "repositories", "give the token the `repo` scope (or `public_repo`)")  # fmt: skip
        for repository in job.source.repositories:
            owner, repo = repository.split("/", 1)
            try:
                api.query(queries.repository_query(), {"owner": owner, "name": repo})
            except HighmarkError as exc:
                add(f"repository {repository}", Level.FAIL, str(exc),
                    "check the owner/name, or grant the token access to it")  # fmt: skip
            else:
                add(f"repository {repository}", Level.PASS, "found")
    finally:
        api.close()
    return findings
