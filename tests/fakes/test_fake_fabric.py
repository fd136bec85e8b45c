"""The fake Fabric over plain HTTP: what shared/api-contracts.md §4.6 says the real service does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.fakes.entra import CLIENT_ID, FakeEntra
from tests.fakes.fabric import FakeFabric


@pytest.fixture
def fakes() -> Iterator[tuple[FakeEntra, FakeFabric, httpx.Client]]:
    with FakeEntra() as entra, FakeFabric(entra.issuer, page_size=2) as fabric:
        token = entra.issuer.issue(CLIENT_ID, fabric.audience).value
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as client:
            yield entra, fabric, client


def _listing(client: httpx.Client, url: str, *, by_uri: bool = True) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    first = url
    while True:
        body = client.get(url).raise_for_status().json()
        records += body["value"]
        token = body.get("continuationToken")
        if not token:
            assert body.get("continuationUri") is None
            return records
        assert "%" in token and not any(c in token for c in "+/=")
        url = body["continuationUri"] if by_uri else f"{first}?continuationToken={token}"


def test_listings_page_with_encoded_tokens(
    fakes: tuple[FakeEntra, FakeFabric, httpx.Client],
) -> None:
    _, fabric, client = fakes
    spaces = [fabric.add_workspace(f"W{i}") for i in range(5)]
    fabric.add_workspace("Hidden", principals={"someone-else": "Admin"})
    for i in range(3):
        fabric.add_item(spaces[0], f"Model {i}")
    fabric.add_item(spaces[0], "Report", type="Report")
    listed = _listing(client, f"{fabric.fabric_url}/workspaces")
    assert [w["displayName"] for w in listed] == [f"W{i}" for i in range(5)]
    assert _listing(client, f"{fabric.fabric_url}/workspaces", by_uri=False) == listed
    items = _listing(client, f"{fabric.fabric_url}/workspaces/{spaces[0].id}/items")
    assert len(items) == 4 and {i["workspaceId"] for i in items} == {spaces[0].id}
    models = _listing(client, f"{fabric.fabric_url}/workspaces/{spaces[0].id}/items?type=Report")
    assert [m["displayName"] for m in models] == ["Report"]
    semantic = _listing(client, f"{fabric.fabric_url}/workspaces/{spaces[0].id}/semanticModels")
    assert len(semantic) == 3
    one = client.get(f"{fabric.fabric_url}/workspaces/{spaces[1].id}").json()
    assert one["displayName"] == "W1"


def test_a_token_encoded_twice_or_not_at_all_is_refused(
    fakes: tuple[FakeEntra, FakeFabric, httpx.Client],
) -> None:
    _, fabric, client = fakes
    for i in range(3):
        fabric.add_workspace(f"W{i}")
    url = f"{fabric.fabric_url}/workspaces"
    token = client.get(url).json()["continuationToken"]
    twice = client.get(url, params={"continuationToken": token})  # httpx encodes it again
    assert twice.status_code == 400 and twice.json()["errorCode"] == "InvalidContinuationToken"
    assert "%25" in str(twice.request.url)
    raw = client.get(f"{url}?continuationToken={quote(token, safe='%')}".replace("%3D", "="))
    assert raw.status_code == 400
    assert client.get(f"{url}?continuationToken={token}").status_code == 200


def test_page_plans_and_end_styles(fakes: tuple[FakeEntra, FakeFabric, httpx.Client]) -> None:
    _, fabric, client = fakes
    for i in range(3):
        fabric.add_workspace(f"W{i}")
    fabric.plan_pages(0, 1)
    first = client.get(f"{fabric.fabric_url}/workspaces").json()
    assert first["value"] == [] and first["continuationUri"]
    assert len(_listing(client, first["continuationUri"])) == 3
    fabric.end_style, fabric.page_size = "null", 10
    body = client.get(f"{fabric.fabric_url}/workspaces").json()
    assert body["continuationToken"] is None and body["continuationUri"] is None
    fabric.with_uri, fabric.page_size = False, 1
    body = client.get(f"{fabric.fabric_url}/workspaces").json()
    assert "continuationUri" not in body and body["continuationToken"]


def test_access_errors(fakes: tuple[FakeEntra, FakeFabric, httpx.Client]) -> None:
    entra, fabric, client = fakes
    space = fabric.add_workspace("Sales")
    gone = fabric.add_workspace("Gone")
    fabric.revoke(space.id)
    fabric.revoke(gone.id, status=404)
    assert client.get(f"{fabric.fabric_url}/workspaces").json()["value"] == []
    denied = client.get(f"{fabric.fabric_url}/workspaces/{space.id}/items")
    assert denied.status_code == 403 and denied.json()["errorCode"] == "InsufficientPrivileges"
    assert client.get(f"{fabric.fabric_url}/workspaces/{gone.id}/items").status_code == 404
    fabric.throttle(retry_after=55)
    throttled = client.get(f"{fabric.fabric_url}/workspaces")
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "55"
    assert throttled.json()["isRetriable"] is True
    fabric.flaky(status=503)
    assert client.get(f"{fabric.fabric_url}/workspaces").json()["isRetriable"] is True
    fabric.service_principals = False
    off = client.get(f"{fabric.fabric_url}/workspaces")
    assert off.status_code == 403 and off.json()["errorCode"] == "PrincipalTypeNotSupported"
    fabric.clock.advance(3600)
    expired = client.get(f"{fabric.fabric_url}/workspaces")
    assert expired.status_code == 401 and expired.json()["errorCode"] == "TokenExpired"
    graph_token = entra.issuer.issue(CLIENT_ID, "https://graph.microsoft.com").value
    other = client.get(
        f"{fabric.fabric_url}/workspaces", headers={"Authorization": f"Bearer {graph_token}"}
    )
    assert other.status_code == 401


def test_admin_listings(fakes: tuple[FakeEntra, FakeFabric, httpx.Client]) -> None:
    entra, fabric, client = fakes
    url = f"{fabric.fabric_url}/admin/workspaces"
    assert client.get(url).json()["errorCode"] == "InsufficientScopes"
    fabric.admin.admins.add(fabric.principal)
    kept = fabric.add_workspace("Kept", principals={})  # admins see every workspace
    gone = fabric.add_workspace("Gone")
    model = fabric.add_item(kept, "Model")
    fabric.tenant.delete_workspace(gone.id)
    spaces = client.get(url).json()["workspaces"]
    assert {(w["name"], w["state"]) for w in spaces} == {("Kept", "Active"), ("Gone", "Deleted")}
    deleted = client.get(url, params={"state": "deleted"}).json()["workspaces"]
    assert [w["id"] for w in deleted] == [gone.id]
    fabric.clock.advance(60)
    fabric.rename_item(model.id, "Model v2")
    (item,) = client.get(f"{fabric.fabric_url}/admin/items").json()["itemEntities"]
    assert item["name"] == "Model v2" and item["lastUpdatedDate"].startswith("2026-01-15T12:01")
    for _ in range(200 - 3):
        client.get(url)
    limited = client.get(url)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 3000
    fabric.clock.advance(3600)
    fresh = entra.issuer.issue(CLIENT_ID, fabric.audience).value
    assert client.get(url, headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
