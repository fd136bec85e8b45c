"""`highmark check` for a Jira job: the email and token work, every project is visible, the
job's JQL is valid."""

from __future__ import annotations

from highmark.config import ProjectConfig
from highmark.connectors.jira.api import JiraApi
from highmark.connectors.jira.config import JiraConnection, JiraJobSpec
from highmark.connectors.jira.issues import search_jql
from highmark.errors import HighmarkError
from highmark.findings import Finding, Level


def check(config: ProjectConfig, job: JiraJobSpec) -> list[Finding]:
    connection = config.connections[job.source.connection]
    assert isinstance(connection, JiraConnection)
    name = job.source.connection
    findings: list[Finding] = []

    def add(check: str, level: Level, detail: str, fix: str = "") -> None:
        findings.append(Finding(job.job_id, check, level, detail, fix))

    api = JiraApi(name, connection.url, connection.email, connection.token)
    try:
        try:
            me = api.myself()
        except HighmarkError as exc:
            add("credentials", Level.FAIL, str(exc),
                f"set the email and a valid API token on connection '{name}' (tokens expire; "
                "scoped tokens need the api.atlassian.com gateway URL)")  # fmt: skip
            return findings
        zone = str(me.get("timeZone") or "UTC")
        add("credentials", Level.PASS, f"authenticated as {me.get('emailAddress')} "
            f"(JQL dates are read in {zone})")  # fmt: skip
        for project in job.source.projects:
            try:
                api.project(project)
                api.search(search_jql(project, None, zone, job.source.jql), ["updated"], 1, None)
            except HighmarkError as exc:
                fix = "check the project key, that the user can browse it, and the job's jql"
                add(f"project {project}", Level.FAIL, str(exc), fix)
            else:
                add(f"project {project}", Level.PASS, "visible, and the search runs")
    finally:
        api.close()
    return findings
