"""The Entra ID connector against the fake Graph: objects per second for a 100,000-user directory,
a first (full) round and a delta round.

The directory: 100,000 users and 1,000 groups of 50 members each (50,000 memberships); Graph's
observed page sizes, 200 users and 20 group occurrences a page, members in slices of 50. The delta
round follows 1 % of the users renamed, 0.1 % deleted, 0.1 % added, and 1,000 memberships changed.
Both rounds are verified (the target's live rows are the directory's), against the fake answering
at once (0 ms) and after 50 ms, into a SQLite target (or ``--target postgresql://…``). "outside
HTTP" is the run's wall time minus its HTTP round trips: what highmark itself costs (parsing,
folding pages, writing, checkpoints). The fakes run in this process: with 0 ms latency their own
work (building rounds, rendering pages) is part of the HTTP time.

    .venv/bin/python bench/msgraph.py [--quick] [--target URL] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import client_stats  # bench/connectors.py

import highmark
from highmark import clock, db
from tests.fakes.entra import CLIENT_ID, CLIENT_SECRET, TENANT, FakeEntra
from tests.fakes.msgraph import FakeGraph

LATENCIES = (0.0, 0.05)
GROUPS, MEMBERS = 1000, 50


@dataclass
class Result:
    latency_ms: int
    phase: str
    objects: int
    seconds: float
    http_seconds: float
    requests: int
    written: int
    updated: int
    deleted: int

    @property
    def rate(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0

    @property
    def outside_share(self) -> float:
        return max(0.0, self.seconds - self.http_seconds) / self.seconds if self.seconds else 0.0


def seed(graph: FakeGraph, users: int) -> None:
    d = graph.directory
    people = [d.add_user().id for _ in range(users)]
    for g in range(GROUPS * users // 100_000):
        group = d.add_group().id
        start = (g * MEMBERS) % max(1, users - MEMBERS)
        d.add_members(group, people[start : start + MEMBERS])


def change(graph: FakeGraph, users: int) -> None:
    d = graph.directory
    people = [u.id for u in d.live("users")]
    for uid in people[: users // 100]:
        d.update("users", uid, displayName="Renamed " + uid[:8])
    for uid in people[-(users // 1000) :]:
        d.delete("users", uid)  # also leaves its groups
    for _ in range(users // 1000):
        d.add_user()
    groups = [g.id for g in d.live("groups")]
    for i in range(len(groups)):
        d.add_member(groups[i], people[(i * 7919) % len(people)])


def verify(graph: FakeGraph, target: str, folder: Path) -> None:
    users = len(graph.directory.live("users"))
    members = sum(len(g.members) for g in graph.directory.live("groups"))
    found = (count(target, folder, "msgraph_users"), count(target, folder, "msgraph_group_members"))
    if found != (users, members):
        raise SystemExit(f"target holds {found} users and members, the directory {users, members}")


def count(target: str, folder: Path, table: str) -> int:
    if target.startswith("sqlite"):
        with sqlite3.connect(folder / "dw.db") as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    from sqlalchemy import create_engine, text

    engine = create_engine(target.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        value = int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    engine.dispose()
    return value


def drop_tables(target: str) -> None:
    """A database target starts empty: every first round is a first round."""
    from sqlalchemy import create_engine, text

    engine = create_engine(target.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        for name in ("users", "groups", "group_members"):
            conn.execute(text(f"DROP TABLE IF EXISTS msgraph_{name}"))
    engine.dispose()


def run_rounds(users: int, latency: float, target: str | None) -> list[Result]:
    with (
        FakeEntra() as entra,
        FakeGraph(entra.issuer, latency=latency, page_size=200, member_slice=50) as graph,
        tempfile.TemporaryDirectory() as tmp,
    ):
        clock.set_clock(graph.clock.now)  # tokens and delta links on the fake's clock
        folder = Path(tmp)
        if target is not None:
            drop_tables(target)
        seed(graph, users)
        dw = target or f"sqlite:///{folder / 'dw.db'}"
        (folder / "highmark.yml").write_text(
            f"control: sqlite:///{folder / 'control.db'}\n"
            "connections:\n"
            f"  entra: {{type: msgraph, url: {graph.graph_url}, authority: {entra.url}, "
            f"tenant_id: {TENANT}, client_id: {CLIENT_ID}, client_secret: '{CLIENT_SECRET}'}}\n"
            f"  dw: {dw}\n"
            "jobs:\n  directory:\n    load_type: incremental\n"
            "    source: {connection: entra}\n    target: {connection: dw}\n"
        )
        project = highmark.Project.load(folder / "highmark.yml")
        results = []
        for phase in ("first round", "delta round"):
            if phase == "delta round":
                change(graph, users)
            with client_stats() as clients:
                started = time.perf_counter()
                record = project.run("directory")
                seconds = time.perf_counter() - started
            if record.run_status.value != "success":
                raise SystemExit(f"{phase}: {record.error_message}")
            verify(graph, dw, folder)
            results.append(
                Result(
                    int(latency * 1000), phase, record.rows_read, seconds,
                    sum(c.stats.http_seconds for c in clients),
                    sum(c.stats.requests for c in clients),
                    record.rows_written, record.rows_updated, record.rows_deleted,
                )
            )  # fmt: skip
        clock.set_clock(None)
        db.dispose_all()
        return results


def table(results: list[Result]) -> str:
    lines = [
        "| latency | round | objects | seconds | objects/s | requests | written | updated "
        "| deleted | outside HTTP |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.latency_ms} ms | {r.phase} | {r.objects:,} | {r.seconds:.2f} | {r.rate:,.0f} "
            f"| {r.requests} | {r.written:,} | {r.updated:,} | {r.deleted:,} "
            f"| {r.outside_share:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 users")
    parser.add_argument("--target", help="a PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--out", type=Path, help="write the result table (markdown) here")
    args = parser.parse_args()
    users = 10_000 if args.quick else 100_000
    results: list[Result] = []
    for latency in LATENCIES:
        results += run_rounds(users, latency, args.target)
        print(table(results), file=sys.stderr)
    report = (
        "# The Entra ID connector against the fake Graph\n\n"
        f"`.venv/bin/python bench/msgraph.py{' --quick' if args.quick else ''}`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"target {'PostgreSQL' if args.target else 'SQLite'}. {users:,} users, "
        f"{GROUPS * users // 100_000:,} groups of {MEMBERS} members; 200 users a page, members "
        "in slices of 50; the delta round after 1 % of the users renamed, 0.1 % deleted, 0.1 % "
        "added and one membership added per group. Objects are users, group occurrences and "
        "member entries received. Each round verified (the target's rows are the directory's).\n\n"
        + table(results)
        + "\n"
    )
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
