"""`highmark check` for a Fabric job: a token can be had, the service principal may use Fabric's
APIs (the tenant setting), and each workspace the job names is visible."""

from __future__ import annotations

from highmark.config import ProjectConfig
from highmark.connectors.fabric.api import FabricApi
from highmark.connectors.fabric.config import FabricConnection, FabricJobSpec
from highmark.errors import HighmarkError
from highmark.findings import Finding, Level

SETTING_FIX = (
    "a Fabric administrator enables the tenant setting 'Service principals can use Fabric APIs' "
    "(for a group the app is in), and each workspace gives the app a role (Viewer at least)"
)


def check(config: ProjectConfig, job: FabricJobSpec) -> list[Finding]:
    connection = config.connections[job.source.connection]
    assert isinstance(connection, FabricConnection)
    name = job.source.connection
    findings: list[Finding] = []

    def add(check: str, level: Level, detail: str, fix: str = "") -> None:
        findings.append(Finding(job.job_id, check, level, detail, fix))

    api = FabricApi(name, connection)
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
        try:
            first = api.page(api.workspaces_url())
        except HighmarkError as exc:
            add("workspaces", Level.FAIL, str(exc), SETTING_FIX)
            return findings
        count = len(first["value"])
        more = " (first page)" if api.next_url(api.workspaces_url(), first) else ""
        if count:
            add("workspaces", Level.PASS, f"{count} workspaces visible{more}")
        else:
            add("workspaces", Level.WARN, "no workspace is visible", SETTING_FIX)
        for workspace_id in job.source.workspaces or []:
            try:
                found = api.get(api.workspace_url(workspace_id))
            except HighmarkError as exc:
                add(f"workspace {workspace_id}", Level.FAIL, str(exc),
                    "check the id, and give the app a role in the workspace")  # fmt: skip
            else:
                add(f"workspace {workspace_id}", Level.PASS, f"{found.get('displayName')}")
    finally:
        api.close()
    return findings
