"""Helpers of the Entra ID (Graph) and Fabric connectors' tests: the fakes started together on one
fake clock that is highmark's clock too, a project file pointing a job at them, and the target's
rows read back comparably with the fakes' truth (booleans as bools, JSON parsed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text

from highmark import clock
from highmark.project import Project
from tests.conftest import sa_url
from tests.fakes.entra import CLIENT_ID, CLIENT_SECRET, TENANT, FakeEntra
from tests.fakes.fabric import FakeFabric
from tests.fakes.msgraph import FakeGraph

USER_COLUMNS = (
    "id",
    "display_name",
    "user_principal_name",
    "mail",
    "account_enabled",
    "department",
)
GROUP_COLUMNS = ("id", "display_name", "security_enabled", "group_types")
BOOLEANS = frozenset({"account_enabled", "security_enabled"})
JSONS = frozenset({"group_types", "raw"})


@contextmanager
def faked_clock(fake: FakeEntra) -> Iterator[None]:
    """highmark's clock is the fakes' clock, and its sleeps pass fake time (no test waits)."""
    clock.set_clock(fake.clock.now)
    clock.set_sleep(fake.clock.sleep)
    try:
        yield
    finally:
        clock.set_clock(None)
        clock.set_sleep(None)


@contextmanager
def graph_services(**options: Any) -> Iterator[tuple[FakeEntra, FakeGraph]]:
    with FakeEntra() as entra, FakeGraph(entra.issuer, **options) as graph, faked_clock(entra):
        yield entra, graph


@contextmanager
def fabric_services(**options: Any) -> Iterator[tuple[FakeEntra, FakeFabric]]:
    with FakeEntra() as entra, FakeFabric(entra.issuer, **options) as fabric, faked_clock(entra):
        yield entra, fabric


def credentials(entra: FakeEntra) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "authority": entra.url,
    }


def write_project(
    directory: Path,
    *,
    connection: dict[str, Any],
    job: dict[str, Any],
    target: str | None = None,
    job_id: str = "directory",
) -> Path:
    """``highmark.yml``: a SQLite control store, the connection ``entra`` (or whatever
    ``connection`` is), ``dw`` (``target``, default a SQLite file) and one job."""
    document = {
        "control": f"sqlite:///{directory / 'control.db'}",
        "connections": {"src": connection, "dw": target or f"sqlite:///{directory / 'dw.db'}"},
        "jobs": {job_id: {"load_type": "incremental", **job}},
    }
    path = directory / "highmark.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def graph_project(
    directory: Path,
    entra: FakeEntra,
    graph: FakeGraph,
    *,
    source: dict[str, Any] | None = None,
    target: str | None = None,
    **job: Any,
) -> Path:
    connection = {"type": "msgraph", "url": graph.graph_url, **credentials(entra)}
    return write_project(
        directory,
        connection=connection,
        job={
            "source": {"connection": "src", **(source or {})},
            "target": {"connection": "dw"},
            **job,
        },
        target=target,
    )


def fabric_project(
    directory: Path,
    entra: FakeEntra,
    fabric: FakeFabric,
    *,
    source: dict[str, Any] | None = None,
    target: str | None = None,
    **job: Any,
) -> Path:
    connection = {"type": "fabric", "url": fabric.fabric_url, **credentials(entra)}
    return write_project(
        directory,
        connection=connection,
        job={
            "source": {"connection": "src", **(source or {})},
            "target": {"connection": "dw"},
            **job,
        },
        target=target,
        job_id="catalog",
    )


# ------------------------------------------------------------------------------ the target


def table(project: Path, name: str, columns: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Rows of target table ``name``, normalised, sorted by their first column(s)."""
    config = Project.load(project, sync=False).config
    url = config.connections["dw"].url  # type: ignore[attr-defined]
    engine = create_engine(sa_url(url))
    try:
        with engine.connect() as conn:
            result = conn.execute(text(f"SELECT * FROM {name}"))
            keys = list(result.keys())
            found = [dict(zip(keys, row, strict=True)) for row in result]
    finally:
        engine.dispose()
    rows = [{k: _normal(k, v) for k, v in row.items()} for row in found]
    if columns is not None:
        rows = [{c: row[c] for c in columns} for row in rows]
    return sorted(
        rows, key=lambda r: json.dumps([r.get("id"), r.get("group_id"), r.get("member_id")])
    )


def _normal(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in BOOLEANS:
        return bool(value)
    if column in JSONS and isinstance(value, str):
        return json.loads(value)
    return value


def live(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("deleted_at") is None]


# ------------------------------------------------------------------------------ the truth


def graph_users(graph: FakeGraph) -> list[dict[str, Any]]:
    """What ``msgraph_users`` should hold (the columns of :data:`USER_COLUMNS`)."""
    rows = [
        {
            "id": u.id,
            "display_name": u.props["displayName"],
            "user_principal_name": u.props["userPrincipalName"],
            "mail": u.props["mail"],
            "account_enabled": u.props["accountEnabled"],
            "department": u.props["department"],
        }
        for u in graph.directory.live("users")
    ]
    return sorted(rows, key=lambda r: json.dumps([r["id"], None, None]))


def graph_groups(graph: FakeGraph) -> list[dict[str, Any]]:
    rows = [
        {
            "id": g.id,
            "display_name": g.props["displayName"],
            "security_enabled": g.props["securityEnabled"],
            "group_types": g.props["groupTypes"],
        }
        for g in graph.directory.live("groups")
    ]
    return sorted(rows, key=lambda r: json.dumps([r["id"], None, None]))


def graph_members(graph: FakeGraph) -> list[tuple[str, str, str]]:
    return sorted(
        (g.id, member, kind)
        for g in graph.directory.live("groups")
        for member, kind in g.members.items()
    )


def member_rows(project: Path, prefix: str = "msgraph_") -> list[tuple[str, str, str]]:
    rows = live(table(project, f"{prefix}group_members"))
    return sorted((r["group_id"], r["member_id"], r["member_type"]) for r in rows)


def assert_directory_loaded(project: Path, graph: FakeGraph) -> None:
    """The target's live users, groups and memberships are the fake directory's."""
    assert [
        {c: r[c] for c in USER_COLUMNS} for r in live(table(project, "msgraph_users"))
    ] == graph_users(graph)
    assert [
        {c: r[c] for c in GROUP_COLUMNS} for r in live(table(project, "msgraph_groups"))
    ] == graph_groups(graph)
    assert member_rows(project) == graph_members(graph)
