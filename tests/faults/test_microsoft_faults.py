"""kill -9 of Entra ID (Graph delta) and Fabric runs in a child process, then a new run: it resumes
on the page it was on (no committed page is fetched again, the fakes' request logs say), and the
target ends equal to the services' truth. And neither the client secret nor any access token
shows in any output: stdout, stderr (with --debug), run rows, checkpoints.

The fakes run in this process on their own clock; the child reaches them over HTTP.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from highmark.project import Project
from tests.connectors.microsoft_support import (
    assert_directory_loaded,
    fabric_services,
    graph_services,
    live,
    table,
    write_project,
)
from tests.fakes.base import LoggedRequest
from tests.fakes.entra import CLIENT_ID, CLIENT_SECRET, TENANT, FakeEntra
from tests.fakes.msgraph import FakeGraph
from tests.faults import harness
from tests.faults.invariants import assert_no_secret

SECRET_VAR = "HM_AZ_CREDENTIAL"  # a name that does not look secret: the key marks it


def env(**extra: str) -> dict[str, str]:
    return harness.highmark_env(**{SECRET_VAR: CLIENT_SECRET, **extra})


def kill_env(point: str, nth: int) -> dict[str, str]:
    return {**harness.kill_env(point, nth), SECRET_VAR: CLIENT_SECRET}


def project_for(tmp_path: Path, kind: str, entra: FakeEntra, api_url: str) -> Path:
    connection = {
        "type": kind,
        "url": api_url,
        "authority": entra.url,
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": "${" + SECRET_VAR + "}",
    }
    job = {"source": {"connection": "src"}, "target": {"connection": "dw"}}
    return write_project(tmp_path, connection=connection, job=job, job_id="sync")


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return harness.run(project, *args, env=env())


def runs(project: Path) -> list[dict[str, Any]]:
    result = cli(project, "runs", "sync", "--json")
    assert result.returncode == 0, result.stderr
    return list(reversed(json.loads(result.stdout)))


def checkpoint(project: Path) -> Any:
    return json.loads(cli(project, "checkpoint", "show", "sync").stdout)


def seed_directory(graph: FakeGraph) -> None:
    d = graph.directory
    users = [d.add_user() for _ in range(10)]
    group = d.add_group()
    d.add_members(group.id, [u.id for u in users[:5]])


def kill_then_resume(
    project: Path, point: str, nth: int, log: Callable[[], list[LoggedRequest]]
) -> tuple[Any, tuple[list[LoggedRequest], list[LoggedRequest]]]:
    """Kill a run at ``point`` (the ``nth`` time), then run again; the checkpoint the killed run
    left, and the requests of each run (``log`` lists a fake's requests)."""
    before = len(log())
    killed = harness.run(project, "run", "sync", env=kill_env(point, nth))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    saved = checkpoint(project)
    middle = len(log())
    again = cli(project, "run", "sync")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    history = runs(project)
    assert history[-2]["run_status"] == "failed" and "abandoned" in history[-2]["error_message"]
    assert history[-1]["run_status"] == "success"
    requests = log()
    return saved, (requests[before:middle], requests[middle:])


@pytest.fixture(autouse=True)
def _secret_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process reads the project file too (to look at the target)."""
    monkeypatch.setenv(SECRET_VAR, CLIENT_SECRET)


def test_graph_killed_mid_round_resumes_on_its_page(tmp_path: Path) -> None:
    with graph_services(page_size=3) as (entra, graph):
        seed_directory(graph)
        project = project_for(tmp_path, "msgraph", entra, graph.graph_url)
        # The first (full) round: killed after page 2 is in the target, before its checkpoint.
        saved, (first, second) = kill_then_resume(
            project, "after_target_commit", 2, lambda: graph.delta_requests
        )
        assert saved["current_round"] == "users" and saved["sync_type"] == "full"
        in_flight = saved["next_link"]["users"].split("?", 1)[1]
        assert second[0].raw_query == in_flight
        again = {r.raw_query for r in first} & {r.raw_query for r in second}
        assert again == {in_flight}  # only the page in flight was fetched twice
        assert_directory_loaded(project, graph)

        # A resync, killed half-way: the resumed round still sweeps what the reset hid.
        doomed = graph.directory.live("users")[4]
        graph.directory.forget("users", doomed.id)
        graph.force_reset()
        saved, (first, second) = kill_then_resume(
            project, "after_target_commit", 2, lambda: graph.delta_requests
        )
        assert saved["full_rounds"] and saved["sync_type"] == "full"
        assert {r.raw_query for r in first} & {r.raw_query for r in second} == {
            saved["next_link"]["users"].split("?", 1)[1]
        }
        assert_directory_loaded(project, graph)
        assert checkpoint(project)["delta_token"]  # kept for the next run
        assert runs(project)[-1]["rows_deleted"] >= 1


def test_fabric_killed_mid_workspace_resumes_at_it(tmp_path: Path) -> None:
    with fabric_services(page_size=2) as (entra, fabric):
        spaces = [fabric.add_workspace(f"W{i}") for i in range(3)]
        for space in spaces:
            for j in range(5):
                fabric.add_item(space, f"{space.displayName}-{j}")
        project = project_for(tmp_path, "fabric", entra, fabric.fabric_url)
        # Pages: workspaces 2, then 3 per workspace; the 7th commit is W1's second page.
        saved, (first, second) = kill_then_resume(
            project, "after_target_commit", 7, lambda: fabric.requests
        )
        assert saved["workspace_id"] == spaces[1].id and saved["current_dataset"] == "W1"
        assert saved["datasets_processed"] == [spaces[0].id]
        paths = [r.path for r in second]
        assert "/v1/workspaces" not in paths  # the listing was complete: not asked again
        assert all(spaces[0].id not in p for p in paths)  # W0 was done
        again = {(r.path, r.raw_query) for r in first} & {(r.path, r.raw_query) for r in second}
        assert len(again) == 1  # the page in flight
        items = sorted(r["id"] for r in live(table(project, "fabric_items")))
        assert items == sorted(fabric.tenant.items)
        assert Project.load(project, sync=False).checkpoint("sync") is None


def test_no_secret_or_token_in_any_output(tmp_path: Path) -> None:
    with graph_services(page_size=3) as (entra, graph):
        seed_directory(graph)
        project = project_for(tmp_path, "msgraph", entra, graph.graph_url)
        outputs: list[str] = []
        for args in (("run", "sync"), ("--debug", "run", "sync"), ("check",)):
            done = cli(project, *args)
            assert done.returncode == 0, done.stderr
            outputs += [done.stdout, done.stderr]
        entra.issuer.revoke_all()  # every token refused, and then the secret too
        entra.issuer.clients[CLIENT_ID] = "rotated-secret-value"
        for args in (
            ("--debug", "run", "sync"),
            ("check",),
            ("runs", "sync", "--json"),
            ("checkpoint", "show", "sync"),
            ("status",),
            ("jobs",),
        ):
            done = cli(project, *args)
            outputs += [done.stdout, done.stderr]
        assert "invalid_client" in "".join(outputs)
        tokens = [t.value for t in entra.issuer.issued]
        assert len(tokens) >= 2
        control = (tmp_path / "control.db").read_bytes().decode("utf-8", "replace")
        assert_no_secret([CLIENT_SECRET, *tokens], *outputs, control)
