"""The Entra ID connector's delta rounds against the fake Graph: first and later rounds with adds,
changes, removals and membership changes; replays and large groups; resyncs (410, expired and
refused links) that sweep what no tombstone reported; soft deletes; resumed rounds.

The target is compared with the fake directory's truth after every run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from highmark.project import Project
from tests.connectors.microsoft_support import (
    assert_directory_loaded,
    graph_project,
    graph_services,
    live,
    member_rows,
    table,
)
from tests.fakes.entra import FakeEntra
from tests.fakes.msgraph import FakeGraph

JOB = "directory"
Services = tuple[FakeEntra, FakeGraph]


@pytest.fixture
def services() -> Iterator[Services]:
    with graph_services(page_size=3, member_slice=4) as found:
        yield found


def seed(graph: FakeGraph) -> dict[str, Any]:
    """8 users; Eng (6 members: two slices), Sales (2 users and the group Eng), Empty."""
    d = graph.directory
    users = [d.add_user() for _ in range(8)]
    eng = d.add_group(displayName="Eng", groupTypes=["Unified"])
    sales = d.add_group(displayName="Sales")
    empty = d.add_group(displayName="Empty")
    d.add_members(eng.id, [u.id for u in users[:6]])
    d.add_members(sales.id, [users[6].id, users[7].id])
    d.add_member(sales.id, eng.id, "group")
    return {"users": users, "eng": eng, "sales": sales, "empty": empty}


def run(project: Path, **options: Any) -> Any:
    record = Project.load(project).run(JOB, **options)
    assert record.run_status.value == "success", record.error_message
    return record


def checkpoint(project: Path) -> dict[str, Any]:
    data = Project.load(project, sync=False).checkpoint(JOB)
    assert data is not None
    return data


def delta_queries(graph: FakeGraph, since: int = 0) -> list[str]:
    """``users:$deltatoken=…`` / ``groups:$select=…`` for each delta request after ``since``."""
    return [f"{r.path.split('/')[2]}:{r.raw_query}" for r in graph.delta_requests[since:]]


def test_first_round_then_delta_rounds(services: Services, db_url: str, tmp_path: Path) -> None:
    entra, graph = services
    s = seed(graph)
    project = graph_project(tmp_path, entra, graph, target=db_url)

    first = run(project)
    assert_directory_loaded(project, graph)
    # 8 users, Eng twice (two member slices) + 2 groups, 9 memberships.
    assert (first.rows_read, first.rows_written, first.rows_updated) == (8 + 4 + 9, 8 + 3 + 9, 0)
    kept = checkpoint(project)
    assert set(kept["delta_token"]) == {"users", "groups"} and kept["sync_type"] == "full"
    assert kept["users_processed"] == 8 and kept["groups_processed"] == 4
    assert not kept.get("next_link") and not kept.get("recovery_mode")
    marks = {m.source_table: m for m in Project.load(project).watermarks(JOB)}
    assert set(marks) == {"users", "groups"}
    assert marks["users"].watermark_column == "last_sync_timestamp"
    assert marks["users"].last_value_timestamp == graph.clock.now()

    d, users, eng, sales = graph.directory, s["users"], s["eng"], s["sales"]
    d.update("users", users[0].id, displayName="Alice Renamed", department="Legal")
    d.update("users", users[1].id, mobilePhone="+1 555 0100")  # not tracked: no change
    d.delete("users", users[2].id)  # soft; leaves Eng
    d.delete("users", users[3].id, hard=True)
    d.add_user(displayName="Newcomer")
    d.remove_member(eng.id, users[4].id)
    d.add_member(sales.id, users[0].id)
    d.update("groups", s["empty"].id, displayName="Still empty", securityEnabled=False)
    d.delete("groups", sales.id, hard=True)
    before = len(graph.delta_requests)
    graph.clock.advance(600)

    second = run(project)
    assert_directory_loaded(project, graph)
    queries = delta_queries(graph, before)
    assert queries[0] == "users:" + kept["delta_token"]["users"].split("?", 1)[1]
    assert queries[-1].startswith("groups:$deltatoken=")
    # Removed: two users, Sales, its 3 memberships, and Eng's three (users 2, 3 and 4).
    assert second.rows_deleted == 2 + 1 + 3 + 3
    assert second.rows_written == 1 and second.rows_updated == 2  # newcomer; rename, Empty
    assert second.watermark_end == graph.clock.now()

    d.restore("users", users[2].id)
    third = run(project)
    assert_directory_loaded(project, graph)
    assert (third.rows_written, third.rows_deleted) == (1, 0)
    nothing = run(project)
    assert (nothing.rows_read, nothing.rows_written, nothing.rows_updated) == (0, 0, 0)
    assert nothing.rows_deleted == 0


def test_raw_and_columns(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    user = graph.directory.add_user(jobTitle="CTO", officeLocation="Berlin")
    group = graph.directory.add_group(groupTypes=["Unified", "DynamicMembership"])
    graph.directory.add_member(group.id, user.id)
    project = graph_project(tmp_path, entra, graph, source={"user_properties": ["employeeId"]})
    run(project)
    (row,) = table(project, "msgraph_users")
    assert row["job_title"] == "CTO" and row["office_location"] == "Berlin"
    assert row["raw"]["employeeId"] == user.props["employeeId"]
    assert "mobilePhone" not in row["raw"] and row["tenant_id"] == entra.issuer.tenant
    (g,) = table(project, "msgraph_groups")
    assert g["group_types"] == ["Unified", "DynamicMembership"]
    assert "members@delta" not in g["raw"]
    (m,) = table(project, "msgraph_group_members")
    assert m["member_type"] == "user" and m["raw"]["id"] == user.id


def test_a_large_group_over_many_pages_and_replays(tmp_path: Path) -> None:
    with graph_services(page_size=2, member_slice=200) as (entra, graph):
        d = graph.directory
        users = [d.add_user() for _ in range(1000)]
        big, other = d.add_group(displayName="Everyone"), d.add_group()
        d.add_members(big.id, [u.id for u in users])
        d.add_member(other.id, users[0].id)
        graph.replay("groups", other.id)
        project = graph_project(
            tmp_path, entra, graph, source={"entities": ["groups", "group_members"]}
        )
        first = run(project)
        assert member_rows(project) == sorted(
            (g.id, u, "user") for g in (big, other) for u in g.members
        )
        # Everyone in 5 slices, the other group (1 member) and its replay.
        assert first.rows_read == 5 + 1000 + 1 + 1 + 1
        d.add_members(big.id, [d.add_user().id for _ in range(3)])
        for user in users[10:12]:
            d.remove_member(big.id, user.id)
        graph.replay("groups", big.id)
        run(project)
        assert len(member_rows(project)) == 1000 + 3 - 2 + 1
        assert member_rows(project) == sorted(
            (g.id, u, t) for g in (big, other) for u, t in g.members.items()
        )
        assert {r["display_name"] for r in table(project, "msgraph_groups")} >= {"Everyone"}


@pytest.mark.parametrize("mode", ["delete", "mark"])
def test_a_reset_resyncs_in_full_and_sweeps(services: Services, mode: str, tmp_path: Path) -> None:
    entra, graph = services
    s = seed(graph)
    extra = {"soft_delete": {"mode": "mark"}} if mode == "mark" else {}
    project = graph_project(tmp_path, entra, graph, **extra)
    run(project)
    graph.directory.update("users", s["users"][0].id, displayName="Second round")
    run(project)
    # Deleted with no tombstone in any later round: only a full round and a sweep find them.
    graph.directory.forget("users", s["users"][5].id)
    graph.directory.forget("groups", s["sales"].id)
    graph.force_reset()
    before = len(graph.delta_requests)

    third = run(project)
    assert_directory_loaded(project, graph)
    queries = delta_queries(graph, before)
    assert queries[0].startswith("users:$deltatoken=") and queries[1].startswith("users:$select=")
    assert any("full resync" in n and "users" in n for n in third.notes or [])
    assert checkpoint(project)["sync_type"] == "full"
    # The user, Sales, the user's Eng membership, Sales' three memberships.
    assert third.rows_deleted == 1 + 1 + 1 + 3
    assert third.rows_written == 0 and third.rows_updated == 0
    users = table(project, "msgraph_users")
    if mode == "mark":
        gone = [u for u in users if u["deleted_at"] is not None]
        assert [u["id"] for u in gone] == [s["users"][5].id]
    else:
        assert len(users) == 7
    fourth = run(project)  # back to delta rounds from the new links
    assert fourth.rows_read == 0 and delta_queries(graph)[-1].startswith("groups:$deltatoken=")


def test_soft_deleted_users_are_marked_then_restored(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    s = seed(graph)
    project = graph_project(tmp_path, entra, graph, soft_delete={"mode": "mark"})
    run(project)
    victim = s["users"][0]
    graph.directory.delete("users", victim.id)
    removed = run(project)
    assert removed.rows_deleted == 2  # the user, and its Eng membership
    row = next(u for u in table(project, "msgraph_users") if u["id"] == victim.id)
    assert row["deleted_at"] is not None and row["display_name"] == victim.props["displayName"]
    graph.directory.restore("users", victim.id)
    back = run(project)
    assert back.rows_updated == 1
    assert_directory_loaded(project, graph)


def test_an_expired_delta_link_resyncs(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    s = seed(graph)
    project = graph_project(tmp_path, entra, graph)
    run(project)
    graph.clock.advance(8 * 86400)  # delta links last 7 days (and the access token expired)
    graph.directory.forget("users", s["users"][7].id)
    later = run(project)
    assert any("syncStateNotFound" in n for n in later.notes or [])
    assert_directory_loaded(project, graph)
    assert later.rows_deleted == 1 + 1  # the user and its Sales membership
    assert len(entra.token_requests) == 2  # the old token had expired: a new one, no 401
    assert all(r.status != 401 for r in graph.requests)


def test_resync_required_for_one_round_only(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    seed(graph)
    project = graph_project(tmp_path, entra, graph)
    run(project)
    graph.require_resync("groups")
    before = len(graph.delta_requests)
    again = run(project)
    assert delta_queries(graph, before)[0].startswith("users:$deltatoken=")
    assert [q.split("=")[0] for q in delta_queries(graph, before)[1:3]] == [
        "groups:$deltatoken",
        "groups:$select",
    ]
    assert any("resyncRequired" in n for n in again.notes or [])
    assert again.rows_deleted == 0 and again.rows_written == 0
    assert_directory_loaded(project, graph)


def test_a_failed_round_resumes_on_its_page(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    seed(graph)
    project = graph_project(tmp_path, entra, graph)
    graph.fail(
        status=400,
        body={"error": {"code": "Request_BadRequest", "message": "x"}},
        on_request=3,
        path="/v1.0/users/delta",
    )
    failed = Project.load(project).run(JOB)
    assert failed.run_status.value == "failed" and failed.error_details
    assert failed.error_details["retryable"] is False
    saved = checkpoint(project)
    assert saved["current_round"] == "users" and "users" in saved["next_link"]
    committed = [r.raw_query for r in graph.delta_requests if r.status == 200]
    before = len(graph.delta_requests)
    resumed = run(project)
    again = [r.raw_query for r in graph.delta_requests[before:]]
    assert again[0] == saved["next_link"]["users"].split("?", 1)[1]
    assert not set(again) & set(committed)  # no committed page fetched again
    assert resumed.rows_written + failed.rows_written == 8 + 3 + 9
    assert_directory_loaded(project, graph)


def test_a_forgotten_link_restarts_the_round(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    s = seed(graph)
    project = graph_project(tmp_path, entra, graph)
    run(project)
    for user in s["users"]:
        graph.directory.update("users", user.id, department="Ops")
    page_two = graph.count("/v1.0/users/delta") + 2
    graph.fail(status=503, on_request=page_two, path="/v1.0/users/delta", times=6)
    assert Project.load(project).run(JOB).run_status.value == "failed"  # retries exhausted
    assert "users" in checkpoint(project)["next_link"]
    graph.forget_links()  # Graph no longer knows the round's skiptoken
    again = run(project)
    assert any("starts again from its last delta link" in n for n in again.notes or [])
    assert_directory_loaded(project, graph)


def test_a_forgotten_link_of_a_full_round_restarts_it_in_full(
    services: Services, tmp_path: Path
) -> None:
    entra, graph = services
    s = seed(graph)
    project = graph_project(tmp_path, entra, graph)
    graph.fail(status=503, on_request=2, path="/v1.0/users/delta", times=6)
    assert Project.load(project).run(JOB).run_status.value == "failed"
    graph.forget_links()
    graph.directory.forget("users", s["users"][0].id)  # written by the first page, now gone
    again = run(project)
    assert any("full resync" in n for n in again.notes or [])
    assert_directory_loaded(project, graph)


def test_full_refresh_reads_everything_and_sweeps(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    s = seed(graph)
    project = graph_project(tmp_path, entra, graph)
    run(project)
    graph.directory.forget("users", s["users"][1].id)
    before = len(graph.delta_requests)
    refreshed = run(project, full_refresh=True)
    assert all("$select=" in q for q in delta_queries(graph, before)[:1])
    assert refreshed.rows_deleted == 2 and refreshed.rows_updated == 0
    assert_directory_loaded(project, graph)


def test_tracking_more_properties_starts_a_full_round(services: Services, tmp_path: Path) -> None:
    entra, graph = services
    user = graph.directory.add_user()
    project = graph_project(tmp_path, entra, graph, source={"entities": ["users"]})
    run(project)
    project = graph_project(
        tmp_path, entra, graph, source={"entities": ["users"], "user_properties": ["employeeId"]}
    )
    second = run(project)
    assert any("properties tracked changed" in n for n in second.notes or [])
    (row,) = table(project, "msgraph_users")
    assert row["raw"]["employeeId"] == user.props["employeeId"] and second.rows_updated == 1
    assert json.dumps(checkpoint(project)["select"]).count("employeeId") == 1
    assert live(table(project, "msgraph_users"))
