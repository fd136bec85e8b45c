"""`highmark check` for a Jira job: the email and token work, every project is visible to that
user, and the job's search (its JQL ANDed with highmark's) runs — each failure with its fix."""

from __future__ import annotations

from highmark.config import ProjectConfig
from highmark.connectors.jira.api import JiraApi
from highmark.connectors.jira.config import JiraConnection, JiraJobSpec
from highmark.connectors.jira.issues import search_jql, user_zone
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
        try:
            zone = user_zone(me)
        except HighmarkError as exc:
            add("time zone", Level.FAIL, str(exc), "pip install -U tzdata")
            return findings
        add("credentials", Level.PASS, f"authenticated as {me.get('emailAddress')} "
            f"(JQL dates are read in {zone})")  # fmt: skip
        visible = []
        for project in job.source.projects:
            try:
                found = api.project(project)
            except HighmarkError as exc:
                add(f"project {project}", Level.FAIL, str(exc),
                    f"check the key (keys are upper case) and that {connection.email} has the "
                    f"Browse Projects permission on {project}")  # fmt: skip
            else:
                visible.append(project)
                add(f"project {project}", Level.PASS, f"visible ({found.get('name', project)})")
        if visible:
            # One search says whether the JQL is valid: it is the same for every project.
            jql = search_jql(visible[0], None, zone, job.source.jql)
            try:
                api.search(jql, ["updated"], 1, None)
            except HighmarkError as exc:
                fix = (
                    "fix the job's source.jql (Jira's message says where)"
                    if job.source.jql
                    else "report this to highmark: its own search was refused"
                )
                add("jql", Level.FAIL, str(exc), fix)
            else:
                add("jql", Level.PASS, f"the search runs: {jql}")
    finally:
        api.close()
    return findings
