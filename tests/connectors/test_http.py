"""The one HTTP client of the API connectors, against a real local server: retries, waits,
credentials, errors, verbatim URLs, and secrets kept out of logs and messages.

No test really waits: the client sleeps on the fake's clock (except the read-timeout test, which
waits a fraction of a second for the timeout itself).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime

import pytest

from highmark import __version__, clock
from highmark.connectors.auth import Token, TokenAuth
from highmark.connectors.http import ApiClient
from highmark.connectors.retry import Reply, RetryPolicy, Verdict
from highmark.errors import ApiError, SourceError
from tests.connectors.support import TOKEN, EchoApi, fresh, make_client


@pytest.fixture(scope="module")
def server() -> Iterator[EchoApi]:
    with EchoApi() as api:
        yield api


@pytest.fixture
def api(server: EchoApi) -> Iterator[EchoApi]:
    with fresh(server) as api:
        yield api


@pytest.fixture
def client(api: EchoApi) -> Iterator[ApiClient]:
    with make_client(api) as c:
        yield c


def test_success_sends_credentials_agent_and_params(api: EchoApi, client: ApiClient) -> None:
    body = client.get_json("/things", params={"state": "open"})

    assert body == {"method": "GET", "path": "/things", "query": "state=open"}
    [request] = api.requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"] == f"highmark/{__version__}"
    assert request.headers["accept"] == "application/json"
    assert (client.stats.requests, client.stats.retries, client.stats.waited_seconds) == (1, 0, 0)
    assert client.stats.http_seconds > 0


def test_post_json_sends_the_body(api: EchoApi, client: ApiClient) -> None:
    client.post_json("/graphql", json={"query": "{ viewer { login } }"})

    assert api.requests[0].json == {"query": "{ viewer { login } }"}
    assert api.requests[0].headers["content-type"] == "application/json"


def test_429_waits_retry_after_seconds(api: EchoApi, client: ApiClient) -> None:
    api.fail(status=429, headers={"Retry-After": "7"})

    assert client.get_json("/things")["path"] == "/things"
    assert api.sleeps == [7.0]
    first, second = api.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at == timedelta(seconds=7)
    assert (client.stats.retries, client.stats.waited_seconds) == (1, 7.0)


def test_429_waits_until_a_retry_after_http_date(api: EchoApi, client: ApiClient) -> None:
    when = format_datetime(api.clock.now() + timedelta(seconds=30), usegmt=True)
    api.fail(status=429, headers={"Retry-After": when})

    client.get_json("/things")
    assert api.sleeps == [30.0]


def test_retry_after_is_honoured_on_any_retried_status(api: EchoApi, client: ApiClient) -> None:
    api.fail(status=503, headers={"Retry-After": "12"})
    client.get_json("/things")
    assert api.sleeps == [12.0]


def test_503_then_success_backs_off_with_jitter(api: EchoApi, client: ApiClient) -> None:
    api.fail(status=503)

    assert client.get_json("/things")["path"] == "/things"
    assert [r.status for r in api.requests] == [503, 200]
    [wait] = api.sleeps
    assert 0.5 <= wait <= 1.0  # base 1 s, drawn within 50-100 %


def test_5xx_exhausting_attempts_is_a_retryable_error(api: EchoApi, client: ApiClient) -> None:
    api.fail(status=502, times=100)

    with pytest.raises(ApiError) as caught:
        client.get_json("/things", params={"page": "2"})

    error = caught.value
    assert isinstance(error, SourceError)
    assert error.retryable and error.status == 502 and error.service == "test"
    assert str(error) == "test: GET /things failed 6 times; the last: 502 Bad Gateway"
    assert error.details["attempts"] == 6 and error.details["path"] == "/things"
    assert api.count() == 6
    assert len(api.sleeps) == 5
    for n, wait in enumerate(api.sleeps):  # 1, 2, 4, 8, 16 s, each jittered
        assert 2**n / 2 <= wait <= 2**n


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(base=1, cap=60)
    assert all(30 <= policy.backoff(20) <= 60 for _ in range(20))


def test_connection_reset_is_retried(api: EchoApi, client: ApiClient) -> None:
    api.fail("reset")

    assert client.get_json("/things")["path"] == "/things"
    assert [r.status for r in api.requests] == [0, 200]


def test_connection_refused_is_a_retryable_error() -> None:
    with EchoApi() as gone, fresh(gone), make_client(gone, max_attempts=2) as client:
        gone.stop()
        with pytest.raises(ApiError) as caught:
            client.get_json("/things")
    assert caught.value.retryable and caught.value.status is None
    assert "could not connect" in str(caught.value)
    assert caught.value.details["attempts"] == 2
    assert caught.value.details["error"] == "ConnectError"


def test_read_timeout_is_retried(api: EchoApi) -> None:
    api.fail("delay", seconds=1.0)

    with make_client(api, read_timeout=0.3) as client:
        assert client.get_json("/things")["path"] == "/things"
    # Two requests, unless a loaded machine made a prompt answer take 0.3 s too.
    assert api.count() >= 2 and api.requests[-1].status == 200


def test_read_timeouts_exhausting_attempts_say_so(api: EchoApi) -> None:
    api.fail("delay", seconds=0.6)

    with (
        make_client(api, read_timeout=0.2, max_attempts=1) as client,
        pytest.raises(ApiError, match=r"no answer within 0.2s") as caught,
    ):
        client.get_json("/things")
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, Exception)


@pytest.mark.parametrize("kind", ["truncated", "invalid"])
def test_a_body_that_is_not_json_is_retried(api: EchoApi, client: ApiClient, kind: str) -> None:
    api.fail(kind)

    assert client.get_json("/things")["path"] == "/things"
    assert api.count() == 2


def test_request_retries_a_cut_json_body_too(api: EchoApi, client: ApiClient) -> None:
    api.fail("truncated")

    response = client.request("GET", "/things")
    assert response.json()["path"] == "/things"
    assert api.count() == 2


def test_401_without_refresh_is_permanent_and_names_the_credential(api: EchoApi) -> None:
    api.fail(status=401, body={"message": "Bad credentials"})

    with make_client(api, service="github") as client, pytest.raises(ApiError) as caught:
        client.post_json("/graphql", json={"query": "{}"})

    assert str(caught.value) == (
        "github: 401 Bad credentials: the token of connection 'github' was refused "
        "(expired, revoked or mistyped)"
    )
    assert not caught.value.retryable and caught.value.status == 401
    assert api.count() == 1


def _token_auth(tokens: list[str]) -> TokenAuth:
    issued = iter(tokens)
    return TokenAuth(lambda: Token(next(issued), expires_in=3600))


def test_401_refreshes_once_and_retries(api: EchoApi) -> None:
    api.fail(status=401)

    with make_client(api, auth=_token_auth(["tok-one-123", "tok-two-456"])) as client:
        assert client.get_json("/things")["path"] == "/things"

    first, second = api.requests
    assert first.headers["authorization"] == "Bearer tok-one-123"
    assert second.headers["authorization"] == "Bearer tok-two-456"
    assert api.sleeps == []


def test_401_after_a_refresh_is_permanent(api: EchoApi) -> None:
    api.fail(status=401, times=5)

    auth = _token_auth(["tok-one-123", "tok-two-456", "tok-three-789"])
    with make_client(api, auth=auth) as client, pytest.raises(ApiError) as caught:
        client.get_json("/things")

    assert not caught.value.retryable and "was refused" in str(caught.value)
    assert api.count() == 2


def test_403_is_permanent_and_names_the_credential(api: EchoApi, client: ApiClient) -> None:
    api.fail(status=403, body={"message": "Forbidden"})

    with pytest.raises(ApiError) as caught:
        client.get_json("/things", params={"cursor": "abc"})

    assert str(caught.value) == (
        "test: 403 Forbidden: the token of connection 'test' is not allowed to GET /things"
    )
    assert not caught.value.retryable
    assert api.count() == 1


def test_404_is_permanent_without_the_query_string(api: EchoApi, client: ApiClient) -> None:
    api.fail(status=404, headers={"x-github-request-id": "ABCD:1234"})

    with pytest.raises(ApiError) as caught:
        client.get_json("/repos/x", params={"secret_cursor": "zzz"})

    assert str(caught.value) == "test: 404 Not Found (GET /repos/x)"
    assert "zzz" not in str(caught.value) and "zzz" not in repr(caught.value.details)
    assert caught.value.details["request_id"] == "ABCD:1234"


def test_a_wait_longer_than_max_wait_is_a_retryable_error(api: EchoApi, client: ApiClient) -> None:
    api.fail(status=429, headers={"Retry-After": "3600"})

    with pytest.raises(ApiError) as caught:
        client.get_json("/things")

    error = caught.value
    assert error.retryable and error.status == 429
    assert "resets at 2026-01-15T13:00:00Z, in 3600s" in str(error)
    assert error.details["resets_at"] == "2026-01-15T13:00:00+00:00"
    assert api.count() == 1 and api.sleeps == []


def test_max_wait_is_configurable(api: EchoApi) -> None:
    api.fail(status=429, headers={"Retry-After": "3600"})
    with make_client(api, max_wait=7200) as client:
        client.get_json("/things")
    assert api.sleeps == [3600.0]


def test_a_classifier_can_accept_retry_or_refuse(api: EchoApi) -> None:
    def classify(reply: Reply) -> Verdict | None:
        if reply.status == 409:
            return Verdict.ok()
        if reply.status == 418:
            return Verdict.retry("teapot", after=3)
        if reply.status == 200 and reply.body.get("path") == "/bad":
            return Verdict.permanent("200 but bad")
        return None

    api.fail(status=418)
    api.fail(status=409, on_request=3)
    with make_client(api, classify=classify) as client:
        assert client.get_json("/things")["path"] == "/things"
        assert client.request("GET", "/conflict").status_code == 409
        with pytest.raises(ApiError, match=r"^test: 200 but bad$"):
            client.get_json("/bad")
    assert api.sleeps == [3.0]


def test_absolute_urls_are_followed_verbatim(api: EchoApi) -> None:
    with make_client(api, base_path="/v1") as client:
        client.get_json("/workspaces")
        client.get_json(f"{api.url}/v1/workspaces?continuationToken=LDEsMTAwMDAwLDA%3D")
        client.get_json(f"{api.url}/v1.0/users/delta?$skiptoken=a+b%2Fc%3D%3D")

    first, second, third = api.requests
    assert first.path == "/v1/workspaces"
    assert second.path == "/v1/workspaces"
    assert second.raw_query == "continuationToken=LDEsMTAwMDAwLDA%3D"
    assert second.param("continuationToken") == "LDEsMTAwMDAwLDA="
    assert third.raw_query == "$skiptoken=a+b%2Fc%3D%3D"


def test_the_token_never_leaks(api: EchoApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.fail(status=503, body={"message": f"upstream refused {TOKEN}"})
    api.fail(status=401, on_request=3, body={"message": f"token {TOKEN} is unknown"})

    with make_client(api) as client:
        client.get_json("/things", params={"q": "a b"})
        with pytest.raises(ApiError) as caught:
            client.get_json("/things")
        text = repr(client) + repr(client.auth)

    assert TOKEN not in str(caught.value) and "***" in str(caught.value)
    assert TOKEN not in repr(caught.value.details)
    assert TOKEN not in text and "***" in text
    messages = [record.getMessage() for record in caplog.records]
    assert messages, "the client logs its requests"
    for message in messages:
        assert TOKEN not in message
    ours = [r.getMessage() for r in caplog.records if r.name == "highmark.http"]
    assert "test: GET /things -> 503 in" in ours[0]
    assert all("?" not in m and "a b" not in m and "a+b" not in m for m in ours)


def test_a_retry_is_logged_with_why_and_how_long(
    api: EchoApi, client: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    api.fail(status=429, headers={"Retry-After": "5"})
    client.get_json("/things")

    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "highmark.http"
    assert warning.getMessage() == "test: GET /things: 429 Too Many Requests; retry 2 of 6 in 5.0s"


def test_sleep_defaults_to_highmarks_sleep_door(api: EchoApi) -> None:
    api.fail(status=429, headers={"Retry-After": "4"})
    slept: list[float] = []
    clock.set_sleep(slept.append)
    try:
        with ApiClient(
            "test", api.url, auth=_token_auth(["tok-aaa-111"]), credential="the token"
        ) as client:
            client.get_json("/things")
    finally:
        clock.set_sleep(None)
    assert slept == [4.0]


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(read_timeout=0)
