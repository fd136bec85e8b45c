"""The ready-made classifiers (GitHub, Jira, Microsoft Graph, Fabric) driving the real client
against a local server that answers as those services do when they throttle or refuse."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from highmark.connectors import classifiers
from highmark.connectors.retry import chain
from highmark.errors import ApiError
from tests.connectors.support import EchoApi, fresh, make_client

SECONDARY = {
    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you "
    "try again.",
    "documentation_url": "https://docs.github.com/rest/overview/rate-limits",
}


@pytest.fixture(scope="module")
def server() -> Iterator[EchoApi]:
    with EchoApi() as api:
        yield api


@pytest.fixture
def api(server: EchoApi) -> Iterator[EchoApi]:
    with fresh(server) as api:
        yield api


# ---------------------------------------------------------------------- GitHub


@pytest.mark.parametrize("kind", ["RATE_LIMITED", "RATE_LIMIT"])
@pytest.mark.parametrize("remaining", ["0", "12"])
def test_github_rate_limited_200_waits_until_reset(api: EchoApi, kind: str, remaining: str) -> None:
    api.fail(
        status=200,
        body={"errors": [{"type": kind, "message": "API rate limit exceeded for user ID 1."}]},
        headers={"x-ratelimit-reset": api.epoch_in(120), "x-ratelimit-remaining": remaining},
    )
    with make_client(api, service="github", classify=classifiers.github) as client:
        assert client.post_json("/graphql", json={"query": "{}"})["path"] == "/graphql"
    assert api.sleeps == [120.0]


def test_github_rate_limit_resetting_too_late_is_retryable(api: EchoApi) -> None:
    api.fail(
        status=200,
        body={"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]},
        headers={"x-ratelimit-reset": api.epoch_in(3000), "x-ratelimit-remaining": "0"},
    )
    with (
        make_client(api, service="github", classify=classifiers.github) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.post_json("/graphql", json={"query": "{}"})
    assert caught.value.retryable and caught.value.code == "RATE_LIMITED"
    assert str(caught.value) == (
        "github: 200 rate limit exceeded (RATE_LIMITED); the limit resets at "
        "2026-01-15T12:50:00Z, in 3000s, longer than this client waits (900s): "
        "a later run will retry"
    )
    assert api.sleeps == []


@pytest.mark.parametrize("status", [200, 403, 429])
def test_github_secondary_limit_with_retry_after(api: EchoApi, status: int) -> None:
    api.fail(status=status, body=SECONDARY, headers={"retry-after": "60"})
    with make_client(api, service="github", classify=classifiers.github) as client:
        client.post_json("/graphql", json={"query": "{}"})
    assert api.sleeps == [60.0]


def test_github_secondary_limit_without_retry_after_waits_60s_then_longer(api: EchoApi) -> None:
    api.fail(status=403, body=SECONDARY, times=4)
    with make_client(api, service="github", classify=classifiers.github) as client:
        client.post_json("/graphql", json={"query": "{}"})
    assert len(api.sleeps) == 4
    assert api.sleeps[0] == 60.0
    assert all(wait >= 60.0 for wait in api.sleeps)
    assert 120 <= api.sleeps[2] <= 240 and 240 <= api.sleeps[3] <= 480


def test_github_secondary_limit_with_no_points_left_waits_until_reset(api: EchoApi) -> None:
    api.fail(
        status=403,
        body=SECONDARY,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": api.epoch_in(300)},
    )
    with make_client(api, service="github", classify=classifiers.github) as client:
        client.post_json("/graphql", json={"query": "{}"})
    assert api.sleeps == [300.0]


def test_github_403_without_limit_wording_is_permanent_with_scopes(api: EchoApi) -> None:
    api.fail(
        status=403,
        body={"message": "Resource not accessible by personal access token"},
        headers={"X-OAuth-Scopes": "repo", "X-Accepted-OAuth-Scopes": "read:org, repo"},
    )
    with (
        make_client(api, service="github", classify=classifiers.github) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.post_json("/graphql", json={"query": "{}"})
    assert not caught.value.retryable
    assert str(caught.value) == (
        "github: 403 Resource not accessible by personal access token: the token of connection "
        "'github' is not allowed to POST /graphql (its scopes: repo; accepted here: read:org, repo)"
    )
    assert api.count() == 1


@pytest.mark.parametrize("status", [502, 504])
def test_github_timeouts_are_retried(api: EchoApi, status: int) -> None:
    api.fail(status=status, body={"message": "We couldn't respond to your request in time"})
    with make_client(api, service="github", classify=classifiers.github) as client:
        client.post_json("/graphql", json={"query": "{}"})
    assert [r.status for r in api.requests] == [status, 200]


def test_github_not_found_comes_back_to_the_connector(api: EchoApi) -> None:
    body = {
        "data": {"repository": None},
        "errors": [{"type": "NOT_FOUND", "path": ["repository"], "message": "Could not resolve"}],
    }
    api.fail(status=200, body=body)
    with make_client(api, service="github", classify=classifiers.github) as client:
        assert client.post_json("/graphql", json={"query": "{}"}) == body


# ---------------------------------------------------------------------- Jira


def test_jira_429_honours_retry_after_and_logs_the_reason(
    api: EchoApi, caplog: pytest.LogCaptureFixture
) -> None:
    api.fail(status=429, headers={"Retry-After": "5", "RateLimit-Reason": "jira-burst-based"})
    with make_client(api, service="jira", classify=classifiers.jira) as client:
        client.get_json("/rest/api/3/search/jql", params={"jql": "project = X"})
    assert api.sleeps == [5.0]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        "jira: GET /rest/api/3/search/jql: 429 Too Many Requests (jira-burst-based); "
        "retry 2 of 6 in 5.0s"
    )


def test_jira_429_without_retry_after_waits_for_the_reset(api: EchoApi) -> None:
    api.fail(status=429, headers={"X-RateLimit-Reset": "2026-01-15T12:02Z"})
    with make_client(api, service="jira", classify=classifiers.jira) as client:
        client.get_json("/rest/api/3/search/jql")
    assert api.sleeps == [120.0]


def test_jira_410_says_the_endpoint_was_removed(api: EchoApi) -> None:
    api.fail(status=410, body={"errorMessages": ["The requested API has been removed."]})
    with (
        make_client(api, service="jira", classify=classifiers.jira) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.get_json("/rest/api/3/search")
    assert str(caught.value) == (
        "jira: 410 The requested API has been removed.: Atlassian removed "
        "GET /rest/api/3/search (highmark must move to its successor)"
    )
    assert not caught.value.retryable


@pytest.mark.parametrize("status", [400, 403, 404])
def test_jira_client_errors_are_permanent(api: EchoApi, status: int) -> None:
    api.fail(status=status, body={"errorMessages": ["nope"], "errors": {}})
    with (
        make_client(api, service="jira", classify=classifiers.jira) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.get_json("/rest/api/3/search/jql")
    assert not caught.value.retryable and caught.value.status == status
    assert api.count() == 1


# ---------------------------------------------------------------------- Microsoft Graph


def test_graph_throttling_logs_the_throttle_scope(
    api: EchoApi, caplog: pytest.LogCaptureFixture
) -> None:
    api.fail(
        status=429,
        body={"error": {"code": "TooManyRequests", "message": "Too many requests"}},
        headers={
            "Retry-After": "10",
            "x-ms-throttle-scope": "Tenant_Application/Read/app/tenant",
            "x-ms-throttle-information": "ResourceUnitLimitExceeded",
        },
    )
    with make_client(api, service="graph", classify=classifiers.graph, base_path="/v1.0") as c:
        c.get_json("/users/delta")
    assert api.sleeps == [10.0]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "TooManyRequests (throttled: Tenant_Application/Read/app/tenant, " in warning


def test_graph_authorization_denied_names_the_permission(api: EchoApi) -> None:
    api.fail(
        status=403,
        body={
            "error": {
                "code": "Authorization_RequestDenied",
                "message": "Insufficient privileges to complete the operation.",
            }
        },
        headers={"request-id": "r-123"},
    )
    with (
        make_client(api, service="graph", classify=classifiers.graph, base_path="/v1.0") as c,
        pytest.raises(ApiError) as caught,
    ):
        c.get_json("/users/delta")
    error = caught.value
    assert not error.retryable and error.code == "Authorization_RequestDenied"
    assert "User.Read.All" in str(error)
    assert "the token of connection 'graph' is not allowed to GET /v1.0/users/delta" in str(error)
    assert error.details["request_id"] == "r-123"


def test_graph_expired_delta_token_is_permanent_with_its_code(api: EchoApi) -> None:
    api.fail(status=400, body={"error": {"code": "syncStateNotFound", "message": "expired"}})
    with (
        make_client(api, service="graph", classify=classifiers.graph) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.get_json("/v1.0/users/delta")
    assert caught.value.code == "syncStateNotFound" and not caught.value.retryable
    assert "full resync" in str(caught.value)


# ---------------------------------------------------------------------- Fabric


def test_fabric_is_retriable_retries_whatever_the_status(api: EchoApi) -> None:
    api.fail(
        status=400,
        body={"errorCode": "UnknownError", "message": "try later", "isRetriable": True},
        headers={"Retry-After": "3", "requestId": "f-1"},
    )
    with make_client(api, service="fabric", classify=classifiers.fabric) as client:
        client.get_json("/v1/workspaces")
    assert api.sleeps == [3.0]


def test_fabric_403_is_permanent(api: EchoApi) -> None:
    api.fail(
        status=403,
        body={"errorCode": "InsufficientPrivileges", "message": "No access", "requestId": "f-2"},
        headers={"requestId": "f-2"},
    )
    with (
        make_client(api, service="fabric", classify=classifiers.fabric) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.get_json("/v1/workspaces")
    assert not caught.value.retryable and caught.value.code == "InsufficientPrivileges"
    assert str(caught.value).startswith(
        "fabric: 403 InsufficientPrivileges: No access: the token of connection 'fabric'"
    )
    assert caught.value.details["request_id"] == "f-2"


def test_chain_lets_a_connector_judge_first(api: EchoApi) -> None:
    from highmark.connectors.retry import Reply, Verdict

    def accept_gone(reply: Reply) -> Verdict | None:
        return Verdict.ok() if reply.status == 410 else None

    api.fail(status=410, headers={"Location": "/v1.0/users/delta?$deltatoken="})
    with make_client(api, classify=chain(accept_gone, classifiers.graph)) as client:
        response = client.request("GET", "/v1.0/users/delta")
    assert response.status_code == 410 and response.headers["location"].endswith("$deltatoken=")
