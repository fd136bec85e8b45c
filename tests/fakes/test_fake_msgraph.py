"""The fake token endpoint and the fake Graph, over plain HTTP: what shared/api-contracts.md §3.7
and §5.1 say the real services do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.entra import CLIENT_ID, CLIENT_SECRET, TENANT, FakeEntra
from tests.fakes.msgraph import EXPIRED, FakeGraph

SELECT = "id,displayName,members"


@pytest.fixture
def fakes() -> Iterator[tuple[FakeEntra, FakeGraph, httpx.Client]]:
    with FakeEntra() as entra, FakeGraph(entra.issuer, page_size=2, member_slice=2) as graph:
        token = entra.issuer.issue(CLIENT_ID, graph.audience).value
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as client:
            yield entra, graph, client


def _round(client: httpx.Client, url: str) -> tuple[list[dict[str, Any]], str]:
    """Every object of a round, and its delta link."""
    objects: list[dict[str, Any]] = []
    while True:
        body = client.get(url).raise_for_status().json()
        objects += body["value"]
        if "@odata.nextLink" in body:
            assert "@odata.deltaLink" not in body
            url = body["@odata.nextLink"]
            continue
        return objects, body["@odata.deltaLink"]


def test_token_endpoint_grants_and_refuses() -> None:
    with FakeEntra(lifetime=600) as entra, httpx.Client() as client:
        url = f"{entra.url}/{TENANT}/oauth2/v2.0/token"
        form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "scope": "https://graph.microsoft.com/.default",
                "grant_type": "client_credentials"}  # fmt: skip
        body = client.post(url, data=form).json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 600
        issued = entra.issuer.issued[0]
        assert issued.value == body["access_token"] and issued.audience.endswith(".com")
        bad = client.post(url, data={**form, "client_secret": "nope"})
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        assert "AADSTS7000215" in bad.json()["error_description"]
        scope = client.post(url, data={**form, "scope": "User.Read"})
        assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"
        tenant = client.post(f"{entra.url}/contoso.example/oauth2/v2.0/token", data=form)
        assert tenant.status_code == 400 and tenant.json()["error"] == "invalid_request"


def test_initial_round_then_delta_round(fakes: tuple[FakeEntra, FakeGraph, httpx.Client]) -> None:
    _, graph, client = fakes
    d = graph.directory
    alice, bob, carol = d.add_user(displayName="Alice"), d.add_user(), d.add_user()
    team = d.add_group(displayName="Team")
    d.add_members(team.id, [alice.id, bob.id, carol.id])
    users, link = _round(client, f"{graph.graph_url}/users/delta?$select=id,displayName")
    assert [u["displayName"] for u in users] == ["Alice", "User 2", "User 3"]
    assert users[0].keys() == {"id", "displayName"}
    groups, group_link = _round(client, f"{graph.graph_url}/groups/delta?$select={SELECT}")
    # Three members in slices of two: the group twice, the second time without properties.
    assert [set(g) for g in groups] == [{"id", "displayName", "members@delta"},
                                         {"id", "members@delta"}]  # fmt: skip
    assert sum(len(g["members@delta"]) for g in groups) == 3

    d.update("users", alice.id, displayName="Alice B.")
    d.update("users", bob.id, mobilePhone="+1 555")  # not selected: not reported
    d.delete("users", carol.id)  # soft: reason "changed"; leaves the team too
    d.delete("groups", d.add_group().id, hard=True)
    changed, _ = _round(client, link)
    assert changed == [
        {"id": alice.id, "displayName": "Alice B."},
        {"id": carol.id, "@removed": {"reason": "changed"}},
    ]
    d.restore("users", carol.id)
    groups, _ = _round(client, group_link)
    assert groups[0]["members@delta"] == [
        {"@odata.type": "#microsoft.graph.user", "id": carol.id, "@removed": {"reason": "deleted"}}
    ]
    assert groups[1]["@removed"] == {"reason": "deleted"}


def test_links_must_come_back_verbatim(fakes: tuple[FakeEntra, FakeGraph, httpx.Client]) -> None:
    _, graph, client = fakes
    for _ in range(3):
        graph.directory.add_user()
    first = client.get(f"{graph.graph_url}/users/delta?$select=id").json()
    link = first["@odata.nextLink"]
    assert client.get(link + "&$select=id").status_code == 400
    assert client.get(link.replace("$skiptoken", "%24skiptoken")).status_code == 400
    assert client.get(link).status_code == 200


def test_query_options(fakes: tuple[FakeEntra, FakeGraph, httpx.Client]) -> None:
    _, graph, client = fakes
    a, b, _ = (graph.directory.add_user() for _ in range(3))
    base = f"{graph.graph_url}/users/delta"
    assert client.get(f"{base}?$expand=manager").status_code == 400
    assert client.get(f"{base}?$orderby=displayName").status_code == 400
    assert len(client.get(f"{base}?$top=1&$select=id").json()["value"]) == 2  # $top ignored
    found = client.get(f"{base}?$filter=id eq '{a.id}' or id eq '{b.id}'").json()["value"]
    assert {u["id"] for u in found} == {a.id, b.id}
    latest = client.get(f"{base}?$select=id,displayName&$deltatoken=latest").json()
    assert latest["value"] == [] and "@odata.deltaLink" in latest
    graph.directory.update("users", a.id, displayName="Z")
    assert [u["id"] for u in _round(client, latest["@odata.deltaLink"])[0]] == [a.id]
    alt = client.get(f"{graph.graph_url}/users/microsoft.graph.delta?$select=id")
    assert alt.status_code == 200


def test_minimal_answers_carry_changed_properties_only(
    fakes: tuple[FakeEntra, FakeGraph, httpx.Client],
) -> None:
    _, graph, client = fakes
    user = graph.directory.add_user()
    _, link = _round(client, f"{graph.graph_url}/users/delta?$select=id,displayName,mail")
    graph.directory.update("users", user.id, mail="new@contoso.example")
    body = client.get(link, headers={"Prefer": "return=minimal"}).json()
    assert body["value"] == [{"id": user.id, "mail": "new@contoso.example"}]


def test_expired_reset_and_resync(fakes: tuple[FakeEntra, FakeGraph, httpx.Client]) -> None:
    entra, graph, client = fakes
    _, link = _round(client, f"{graph.graph_url}/users/delta?$select=id")
    graph.require_resync("users")
    assert client.get(link).json()["error"]["code"] == "resyncRequired"
    assert client.get(link).status_code == 200
    graph.clock.advance(8 * 86400)
    # The access token expired too: a new one.
    fresh = entra.issuer.issue(CLIENT_ID, graph.audience).value
    auth = {"Authorization": f"Bearer {fresh}"}
    expired = client.get(link, headers=auth)
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "syncStateNotFound"
    assert expired.json()["error"]["message"] == EXPIRED
    with httpx.Client(headers=auth) as other:
        _, link = _round(other, f"{graph.graph_url}/users/delta?$select=id")
    graph.force_reset()
    reset = client.get(link, headers=auth)
    assert reset.status_code == 410
    assert reset.headers["location"].endswith("/users/delta?$deltatoken=")


def test_auth_throttling_and_permissions(fakes: tuple[FakeEntra, FakeGraph, httpx.Client]) -> None:
    entra, graph, client = fakes
    url = f"{graph.graph_url}/users/delta"
    assert httpx.get(url).status_code == 401
    graph.throttle(retry_after=None)
    throttled = client.get(url)
    assert throttled.status_code == 429 and "retry-after" not in throttled.headers
    assert throttled.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    assert client.get(url).headers["x-ms-resource-unit"] == "1"
    graph.deny("groups")
    denied = client.get(f"{graph.graph_url}/groups/delta")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"
    entra.issuer.revoke_all()
    assert client.get(url).json()["error"]["code"] == "InvalidAuthenticationToken"
    fabric_token = entra.issuer.issue(CLIENT_ID, "https://api.fabric.microsoft.com").value
    other = httpx.get(url, headers={"Authorization": f"Bearer {fabric_token}"})
    assert other.status_code == 401


def test_plans_replays_and_forgetting(fakes: tuple[FakeEntra, FakeGraph, httpx.Client]) -> None:
    _, graph, client = fakes
    users = [graph.directory.add_user() for _ in range(3)]
    graph.plan_pages(0, 1)
    graph.replay("users", users[0].id)
    first = client.get(f"{graph.graph_url}/users/delta?$select=id").json()
    assert first["value"] == [] and "@odata.nextLink" in first
    objects, _ = _round(client, first["@odata.nextLink"])
    assert [u["id"] for u in objects] == [u.id for u in users] + [users[0].id]
    middle = client.get(f"{graph.graph_url}/users/delta?$select=id").json()["@odata.nextLink"]
    graph.forget_links()
    assert client.get(middle).status_code == 400
    graph.directory.forget("users", users[1].id)
    objects, _ = _round(client, f"{graph.graph_url}/users/delta?$select=id")
    assert users[1].id not in {u["id"] for u in objects}
