"""`highmark check` for an Entra ID job: a token can be had, and each delta query the job makes
is allowed (``$deltatoken=latest``: Graph answers with a delta link and no objects)."""

from __future__ import annotations

from highmark.config import ProjectConfig
from highmark.connectors.classifiers import GRAPH_PERMISSIONS
from highmark.connectors.msgraph.api import GraphApi
from highmark.connectors.msgraph.config import MsGraphConnection, MsGraphJobSpec
from highmark.errors import HighmarkError
from highmark.findings import Finding, Level


def check(config: ProjectConfig, job: MsGraphJobSpec) -> list[Finding]:
    connection = config.connections[job.source.connection]
    assert isinstance(connection, MsGraphConnection)
    name = job.source.connection
    findings: list[Finding] = []

    def add(check: str, level: Level, detail: str, fix: str = "") -> None:
        findings.append(Finding(job.job_id, check, level, detail, fix))

    api = GraphApi(name, connection)
    try:
        if connection.token is None:
            try:
                api.auth.headers()
            except HighmarkError as exc:
                add("token", Level.FAIL, str(exc),
                    f"check tenant_id, client_id and client_secret of connection '{name}' (a "
                    "secret expires; copy its value, not its id)")  # fmt: skip
                return findings
            add("token", Level.PASS, f"a token for {connection.default_scope()} was issued")
        for entity in job.source.rounds():
            permission = GRAPH_PERMISSIONS[entity]
            try:
                api.page(api.start_url(entity, "id", latest=True))
            except HighmarkError as exc:
                add(f"{entity}/delta", Level.FAIL, str(exc),
                    f"grant the app the application permission {permission} (or "
                    "Directory.Read.All) with admin consent")  # fmt: skip
            else:
                add(f"{entity}/delta", Level.PASS, "allowed")
    finally:
        api.close()
    return findings
