"""The Entra ID connector's talk with Graph and the token endpoint: throttling (429 with and
without ``Retry-After``, 503), tokens that expire or are revoked mid-run, refused credentials and
permissions, links to another host, a ready bearer token, ``highmark check``, and the project
file's errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from highmark.config import load_project_config
from highmark.errors import ConfigError
from highmark.project import Project
from tests.connectors.microsoft_support import (
    assert_directory_loaded,
    credentials,
    faked_clock,
    graph_project,
    graph_services,
    table,
    write_project,
)
from tests.fakes.base import LoggedRequest, Response
from tests.fakes.entra import CLIENT_SECRET, FakeEntra
from tests.fakes.msgraph import FakeGraph

JOB = "directory"
USERS = "/v1.0/users/delta"
Services = tuple[FakeEntra, FakeGraph]


@pytest.fixture
def services() -> Iterator[Services]:
    with graph_services(page_size=2) as found:
        yield found


def seed(graph: FakeGraph, users: int = 9) -> None:
    d = graph.directory
    people = [d.add_user() for _ in range(users)]
    group = d.add_group()
    d.add_members(group.id, [p.id for p in people[:3]])


def run(project: Path) -> Any:
    return Project.load(project).run(JOB)


def queries(graph: FakeGraph, path: str = USERS) -> list[str]:
    return [r.raw_query for r in graph.requests if r.path == path]


def test_429_without_retry_after_backs_off_and_resumes_the_page(
    services: Services, tmp_path: Path
) -> None:
    entra, graph = services
    seed(graph)
    graph.throttle(on_request=3, path=USERS, retry_after=None, times=2)
    started = graph.clock.now()
    record = run(graph_project(tmp_path, entra, graph))
    assert record.run_status.value == "success", record.error_message
    sent = queries(graph)
    # Page 3 asked three times with the same link; the round never restarted.
    assert sent[2] == sent[3] == sent[4] and sent[2].startswith("$skiptoken=")
    assert sum(q.startswith("$select=") for q in sent) == 1
    waited = (graph.clock.now() - started).total_seconds()
    assert 0.5 + 1.0 <= waited <= 1 + 2  # exponential: ~1 s, then ~2 s (jitter 50-100 %)
    assert [r.status for r in graph.requests if r.path == USERS].count(429) == 2
    assert_directory_loaded(tmp_path / "highmark.yml", graph)


def test_429_with_retry_after_and_a_503_mid_round(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    seed(graph)
    graph.throttle(on_request=2, path=USERS, retry_after=30)
    graph.fail(status=503, on_request=4, path=USERS)
    started = graph.clock.now()
    record = run(graph_project(tmp_path, entra, graph))
    assert record.run_status.value == "success", record.error_message
    assert (graph.clock.now() - started).total_seconds() >= 30
    sent = queries(graph)
    assert sent[1] == sent[2] and sent[3] == sent[4]
    assert record.rows_written == 9 + 1 + 3


def test_a_token_that_expires_mid_run_is_renewed_once(tmp_path: Path) -> None:
    with (
        FakeEntra(lifetime=600) as entra,
        FakeGraph(entra.issuer, page_size=2) as graph,
        faked_clock(entra),
    ):
        seed(graph)
        # Past the renewal point (10 min - 5 min of margin) between pages 2 and 3.
        graph.before(3, lambda: graph.clock.advance(400))
        record = run(graph_project(tmp_path, entra, graph))
        assert record.run_status.value == "success", record.error_message
        assert len(entra.token_requests) == 2
        assert all(r.status != 401 for r in graph.requests)
        used = {r.headers["authorization"] for r in graph.requests}
        assert len(used) == 2


def test_a_revoked_token_is_refreshed_once_then_the_run_goes_on(
    services: Services, tmp_path: Path
) -> None:
    entra, graph = services
    seed(graph)
    graph.before(3, entra.issuer.revoke_all)
    record = run(graph_project(tmp_path, entra, graph))
    assert record.run_status.value == "success", record.error_message
    assert len(entra.token_requests) == 2
    assert [r.status for r in graph.requests].count(401) == 1
    assert_directory_loaded(tmp_path / "highmark.yml", graph)


def test_refused_credentials_are_permanent_and_secret_free(
    services: Services, tmp_path: Path
) -> None:
    entra, graph = services
    entra.issuer.clients[next(iter(entra.issuer.clients))] = "another-secret-value"
    record = run(graph_project(tmp_path, entra, graph))
    assert record.run_status.value == "failed"
    assert record.error_details and record.error_details["retryable"] is False
    message = record.error_message or ""
    assert "invalid_client" in message and "AADSTS7000215" in message
    assert "connection 'src'" in message and CLIENT_SECRET not in message
    assert CLIENT_SECRET not in str(record.error_details)
    assert len(entra.token_requests) == 1 and not graph.requests


def test_a_missing_permission_names_it_and_is_not_retried(
    services: Services, tmp_path: Path
) -> None:
    entra, graph = services
    seed(graph)
    graph.deny("groups")
    project = graph_project(tmp_path, entra, graph)
    record = run(project)
    assert record.run_status.value == "failed"
    assert record.error_details and record.error_details["retryable"] is False
    assert "Group.Read.All" in (record.error_message or "")
    assert len([r for r in graph.requests if r.path == "/v1.0/groups/delta"]) == 1
    # The users round was complete: the next run does not read it again.
    graph.denied.clear()
    before = len(queries(graph))
    again = run(project)
    assert again.run_status.value == "success" and len(queries(graph)) == before
    assert_directory_loaded(project, graph)


def test_a_link_to_another_host_is_not_followed(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    seed(graph)

    def elsewhere(request: LoggedRequest) -> Response:
        link = "https://graph.attacker.example/v1.0/users/delta?$skiptoken=x"
        return Response.json({"value": [], "@odata.nextLink": link})

    graph.fail(on_request=1, path=USERS, respond=elsewhere)
    record = run(graph_project(tmp_path, entra, graph))
    assert record.run_status.value == "failed"
    assert "graph.attacker.example" in (record.error_message or "")
    assert "sends its token nowhere else" in (record.error_message or "")


def test_a_ready_bearer_token(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    seed(graph)
    token = entra.issuer.issue("managed-identity", graph.audience).value
    connection = {"type": "msgraph", "url": graph.graph_url, "token": token}
    project = write_project(
        tmp_path, connection=connection,
        job={"source": {"connection": "src"}, "target": {"connection": "dw"}},
    )  # fmt: skip
    record = run(project)
    assert record.run_status.value == "success", record.error_message
    assert not entra.token_requests
    assert_directory_loaded(project, graph)
    # No tenant_id: the directory is the token's tid claim.
    assert {r["tenant_id"] for r in table(project, "msgraph_users")} == {entra.issuer.tenant}


def test_check(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    project = Project.load(graph_project(tmp_path, entra, graph))
    job = project.job(JOB)
    findings = job.check_source(project.config)
    assert [(f.check, f.level.value) for f in findings] == [
        ("token", "pass"),
        ("users/delta", "pass"),
        ("groups/delta", "pass"),
    ]
    assert not [r for r in graph.requests if "$select=id" not in r.raw_query]
    graph.deny("users")
    findings = job.check_source(project.config)
    failed = [f for f in findings if f.level.value == "fail"]
    assert [f.check for f in failed] == ["users/delta"]
    assert "User.Read.All" in failed[0].fix
    entra.issuer.clients.clear()
    (token,) = job.check_source(project.config)
    assert token.level.value == "fail" and "client_secret" in token.fix


@pytest.mark.parametrize(
    ("connection", "job", "expected"),
    [
        ({"token": "t0k3n-value", "client_id": "x"}, {}, "client_id: give either a token"),
        ({"tenant_id": "t", "client_id": "c"}, {}, "client_secret: missing: client credentials"),
        ({"tenant_id": "not a tenant!", "client_id": "c", "client_secret": "s3cr3t"}, {},
         "tenant_id"),
        ({"token": "t0k3n-value"}, {"lag": "1m"}, "lag: does not apply to msgraph jobs"),
        ({"token": "t0k3n-value"}, {"source": {"entities": ["devices"]}}, "entities.0"),
        ({"token": "t0k3n-value", "authority": "login.example"}, {}, "authority"),
    ],
)  # fmt: skip
def test_project_file_errors(
    connection: dict[str, Any], job: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    source = {"connection": "src", **job.pop("source", {})}
    path = write_project(
        tmp_path,
        connection={"type": "msgraph", **connection},
        job={"source": source, "target": {"connection": "dw"}, **job},
    )
    with pytest.raises(ConfigError) as caught:
        load_project_config(path)
    assert expected in str(caught.value)
    assert "s3cr3t" not in str(caught.value) and "t0k3n-value" not in str(caught.value)


def test_defaults(tmp_path: Path) -> None:
    with FakeEntra() as entra:
        path = write_project(
            tmp_path,
            connection={"type": "msgraph", **credentials(entra)},
            job={"source": {"connection": "src"}, "target": {"connection": "dw"}},
        )
        config = load_project_config(path)
    job = config.jobs[JOB]
    connection = config.connections["src"]
    assert connection.url == "https://graph.microsoft.com/v1.0"  # type: ignore[attr-defined]
    assert job.target.prefix == "msgraph_"  # type: ignore[attr-defined]
    assert [m.source_table for m in job.marks()] == ["users", "groups"]
    assert CLIENT_SECRET not in repr(connection)
