"""The Fabric connector against the fake Fabric: snapshot diffs (inserts, updates, deletes from
complete listings only), continuation tokens (never encoded twice), throttling, page sizes that
change, a workspace revoked mid-run, the tenant setting, filters, ``highmark check``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from highmark.config import load_project_config
from highmark.errors import ConfigError
from highmark.project import Project
from tests.connectors.microsoft_support import fabric_project, fabric_services, live, table
from tests.fakes.entra import FakeEntra
from tests.fakes.fabric import FakeFabric, Workspace

JOB = "catalog"
Services = tuple[FakeEntra, FakeFabric]


@pytest.fixture
def services() -> Iterator[Services]:
    with fabric_services(page_size=3) as found:
        yield found


def seed(fabric: FakeFabric, workspaces: int = 2, items: int = 4) -> list[Workspace]:
    spaces = [fabric.add_workspace(f"W{i}", capacityId=f"cap-{i}") for i in range(workspaces)]
    for space in spaces:
        for j in range(items):
            kind = "SemanticModel" if j % 2 == 0 else "Report"
            fabric.add_item(space, f"{space.displayName} item {j}", type=kind)
    return spaces


def run(project: Path, ok: bool = True) -> Any:
    record = Project.load(project).run(JOB)
    if ok:
        assert record.run_status.value == "success", record.error_message
    return record


def truth(fabric: FakeFabric) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    visible = [w for w in fabric.tenant.workspaces.values() if fabric.principal in w.roles]
    spaces = sorted((w.id, w.displayName, w.type) for w in visible)
    items = sorted(
        (i.id, i.workspaceId, i.displayName, i.type)
        for w in visible
        for i in fabric.tenant.items_of(w.id)
    )
    return spaces, items


def loaded(project: Path) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    spaces = sorted(
        (r["id"], r["display_name"], r["type"]) for r in live(table(project, "fabric_workspaces"))
    )
    items = sorted(
        (r["id"], r["workspace_id"], r["display_name"], r["type"])
        for r in live(table(project, "fabric_items"))
    )
    return spaces, items


def test_snapshot_diff(services: Services, db_url: str, tmp_path: Path) -> None:
    entra, fabric = services
    spaces = seed(fabric)
    project = fabric_project(tmp_path, entra, fabric, target=db_url)
    first = run(project)
    assert loaded(project) == truth(fabric)
    assert (first.rows_read, first.rows_written, first.rows_deleted) == (10, 10, 0)
    assert Project.load(project).checkpoint(JOB) is None
    (mark,) = Project.load(project).watermarks(JOB)
    assert (mark.source_table, mark.last_value_timestamp) == ("workspaces", fabric.clock.now())
    row = next(r for r in table(project, "fabric_workspaces") if r["id"] == spaces[0].id)
    assert row["capacity_id"] == "cap-0" and row["raw"]["displayName"] == "W0"

    _, b, c, _ = fabric.tenant.items_of(spaces[0].id)
    fabric.tenant.delete_item(b.id)
    fabric.add_item(spaces[1], "D", type="Lakehouse")
    c.displayName = "C renamed"
    fabric.clock.advance(3600 * 2)
    second = run(project)
    assert loaded(project) == truth(fabric)
    assert (second.rows_written, second.rows_updated, second.rows_deleted) == (1, 1, 1)
    assert second.watermark_end == fabric.clock.now()
    nothing = run(project)
    assert (nothing.rows_written, nothing.rows_updated, nothing.rows_deleted) == (0, 0, 0)


@pytest.mark.parametrize("where", ["workspaces", "items"])
def test_an_interrupted_listing_deletes_nothing(
    services: Services, where: str, tmp_path: Path
) -> None:
    entra, fabric = services
    spaces = seed(fabric, workspaces=5, items=5)  # two pages, after a deletion too
    project = fabric_project(tmp_path, entra, fabric)
    run(project)
    before = loaded(project)
    body = {"errorCode": "InvalidParameter", "message": "boom"}
    if where == "workspaces":  # missing from a listing that stops on its second page
        fabric.tenant.delete_workspace(spaces[3].id)
        fabric.fail(status=400, on_request=fabric.count() + 2, body=body)
    else:  # missing from an item listing that stops on its second page
        fabric.tenant.delete_item(fabric.tenant.items_of(spaces[0].id)[0].id)
        path = f"/v1/workspaces/{spaces[0].id}/items"
        fabric.fail(status=400, path=path, on_request=fabric.count(path) + 2, body=body)
    broken = run(project, ok=False)
    assert broken.run_status.value == "failed" and broken.rows_deleted == 0
    assert loaded(project) == before
    healed = run(project)
    assert loaded(project) == truth(fabric)
    assert healed.rows_deleted == (1 + 5 if where == "workspaces" else 1)


@pytest.mark.parametrize(("with_uri", "end_style"), [(True, "absent"), (False, "null")])
def test_continuation_tokens_are_sent_back_as_they_came(
    services: Services, with_uri: bool, end_style: str, tmp_path: Path
) -> None:
    entra, fabric = services
    seed(fabric, workspaces=5, items=5)
    fabric.with_uri, fabric.end_style = with_uri, end_style
    run(fabric_project(tmp_path, entra, fabric))
    assert loaded(tmp_path / "highmark.yml") == truth(fabric)
    sent = [r.raw_query for r in fabric.requests if "continuationToken" in r.raw_query]
    assert len(sent) == 1 + 5  # the second workspace page, and each workspace's second page
    assert all("%25" not in q and "%3D" in q for q in sent)
    assert all(r.status == 200 for r in fabric.requests)


def test_429_on_page_2_of_workspace_3_of_5(services: Services, tmp_path: Path) -> None:
    entra, fabric = services
    spaces = seed(fabric, workspaces=5)
    third = f"/v1/workspaces/{spaces[2].id}/items"
    fabric.throttle(on_request=2, path=third, retry_after=55)
    started = fabric.clock.now()
    record = run(fabric_project(tmp_path, entra, fabric))
    assert (fabric.clock.now() - started).total_seconds() >= 55
    listings = {w.id: [r.raw_query for r in fabric.item_listings(w.id)] for w in spaces}
    assert (
        len(listings[spaces[2].id]) == 3
        and listings[spaces[2].id][1:] == [listings[spaces[2].id][1]] * 2
    )
    assert all(len(listings[w.id]) == 2 for w in spaces if w is not spaces[2])
    assert record.rows_written == 5 + 20 and loaded(tmp_path / "highmark.yml") == truth(fabric)


def test_page_sizes_that_change_between_runs(services: Services, tmp_path: Path) -> None:
    entra, fabric = services
    seed(fabric, workspaces=3, items=5)
    project = fabric_project(tmp_path, entra, fabric)
    run(project)
    first = table(project, "fabric_items")
    for size, plan in ((1, ()), (50, ()), (2, (0, 3, 0))):
        fabric.page_size = size
        fabric.plan_pages(*plan)
        again = run(project)
        assert (again.rows_written, again.rows_updated, again.rows_deleted) == (0, 0, 0)
        assert table(project, "fabric_items") == [
            {**row, "synced_round": r["synced_round"]}
            for row, r in zip(first, table(project, "fabric_items"), strict=True)
        ]
    fabric.flaky(on_request=fabric.count() + 2, status=500)  # isRetriable: tried again
    assert run(project).rows_read == 3 + 15


@pytest.mark.parametrize("status", [403, 404])
def test_a_workspace_revoked_mid_run(services: Services, status: int, tmp_path: Path) -> None:
    entra, fabric = services
    spaces = seed(fabric, workspaces=3)
    project = fabric_project(tmp_path, entra, fabric, soft_delete={"mode": "mark"})
    run(project)
    sales = spaces[1]
    fabric.tenant.delete_item(fabric.tenant.items_of(sales.id)[0].id)
    fabric.add_item(spaces[2], "new in W2")
    items_path = f"/v1/workspaces/{sales.id}/items"
    fabric.before(
        fabric.count(items_path) + 1,
        lambda: fabric.revoke(sales.id, status=status),
        path=items_path,
    )
    record = run(project, ok=False)
    kept = [r for r in live(table(project, "fabric_items")) if r["workspace_id"] == sales.id]
    assert len(kept) == 4 and record.rows_deleted == 0  # nothing of it deleted
    assert any(r["display_name"] == "new in W2" for r in table(project, "fabric_items"))
    if status == 403:
        assert record.run_status.value == "failed"
        assert record.error_details and record.error_details["retryable"] is False
        assert "W1" in (record.error_message or "") and "kept" in (record.error_message or "")
        saved = Project.load(project).checkpoint(JOB)  # nothing left to resume
        assert saved and "listing_started" not in saved and not saved["workspaces_listed"]
    else:
        assert record.run_status.value == "success"
        assert any("not found after it was listed" in n for n in record.notes or [])
    after = run(project)  # the listing no longer has it: it goes, with its items
    assert after.rows_deleted == 1 + 4
    gone = [r for r in table(project, "fabric_workspaces") if r["deleted_at"] is not None]
    assert [r["id"] for r in gone] == [sales.id]
    assert loaded(project) == truth(fabric)


def test_the_tenant_setting_off_is_permanent(services: Services, tmp_path: Path) -> None:
    entra, fabric = services
    seed(fabric)
    fabric.service_principals = False
    record = run(fabric_project(tmp_path, entra, fabric), ok=False)
    assert record.error_details and record.error_details["retryable"] is False
    assert "PrincipalTypeNotSupported" in (record.error_message or "")
    assert "tenant setting" in (record.error_message or "") and len(fabric.requests) == 1


@pytest.mark.parametrize("types", [["SemanticModel"], ["SemanticModel", "Lakehouse"]])
def test_item_types_and_workspaces(services: Services, types: list[str], tmp_path: Path) -> None:
    entra, fabric = services
    spaces = seed(fabric, workspaces=3)
    fabric.add_item(spaces[0], "Lake", type="Lakehouse")
    missing = "00000000-0000-4000-8000-000000000000"
    source = {"item_types": types, "workspaces": [spaces[0].id, spaces[2].id, missing]}
    record = run(fabric_project(tmp_path, entra, fabric, source=source))
    project = tmp_path / "highmark.yml"
    assert {r["id"] for r in table(project, "fabric_workspaces")} == {spaces[0].id, spaces[2].id}
    assert {r["type"] for r in table(project, "fabric_items")} == set(types)
    assert any(missing in n and "not visible" in n for n in record.notes or [])
    listed = fabric.item_listings()
    if len(types) == 1:
        assert all(r.param("type") == "SemanticModel" for r in listed)
    else:
        assert all(r.param("type") is None for r in listed)


def test_a_refused_continuation_lists_the_workspace_again(
    services: Services, tmp_path: Path
) -> None:
    entra, fabric = services
    spaces = seed(fabric, workspaces=2, items=7)
    project = fabric_project(tmp_path, entra, fabric)
    path = f"/v1/workspaces/{spaces[1].id}/items"
    fabric.fail(status=503, path=path, on_request=2, times=6)
    assert run(project, ok=False).run_status.value == "failed"
    saved = Project.load(project).checkpoint(JOB)
    assert saved and saved["workspace_id"] == spaces[1].id and saved["continuation_token"]
    assert saved["datasets_processed"] == [spaces[0].id] and saved["current_dataset"] == "W1"
    fabric.continuations.forget()
    fabric.tenant.delete_item(fabric.tenant.items_of(spaces[1].id)[0].id)  # on the first page
    again = run(project)
    assert any("listed again" in n for n in again.notes or [])
    assert loaded(project) == truth(fabric)
    assert len(fabric.item_listings(spaces[0].id)) == 3  # not listed again: it was done


def test_check(services: Services, tmp_path: Path) -> None:
    entra, fabric = services
    spaces = seed(fabric)
    missing = "00000000-0000-4000-8000-000000000000"
    project = Project.load(
        fabric_project(tmp_path, entra, fabric, source={"workspaces": [spaces[0].id, missing]})
    )
    findings = project.job(JOB).check_source(project.config)
    assert [(f.check, f.level.value) for f in findings] == [
        ("token", "pass"),
        ("workspaces", "pass"),
        (f"workspace {spaces[0].id}", "pass"),
        (f"workspace {missing}", "fail"),
    ]
    fabric.service_principals = False
    failed = project.job(JOB).check_source(project.config)[-1]
    assert failed.check == "workspaces" and "Service principals can use Fabric APIs" in failed.fix


def test_project_file_errors(tmp_path: Path) -> None:
    with fabric_services() as (entra, fabric):
        project = fabric_project(tmp_path, entra, fabric, source={"workspaces": ["sales"]})
        with pytest.raises(ConfigError, match=r"workspaces\.0"):
            load_project_config(project)
        project = fabric_project(tmp_path, entra, fabric, source={"item_types": []})
        with pytest.raises(ConfigError, match="is empty"):
            load_project_config(project)
        config = load_project_config(fabric_project(tmp_path, entra, fabric))
    job = config.jobs[JOB]
    assert job.target.prefix == "fabric_"  # type: ignore[attr-defined]
    assert [m.source_table for m in job.marks()] == ["workspaces"]
