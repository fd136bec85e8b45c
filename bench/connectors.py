"""API connectors against their fakes: records per second, and the share of time spent outside
the HTTP wait.

For GitHub (pull requests with commits, reviews and comments) and Jira (issues), each with one
source key (repository / project) and with four, against the fakes of tests/fakes/ answering at
once (0 ms) and after 50 ms, into a SQLite target (or ``--target postgresql://…``): a first sync
(every record new) and a second one with nothing changed. Every first sync is verified: the target
tables hold exactly the fake's records. "outside HTTP" is the run's wall time minus the time its
HTTP client spent in round trips (waiting for and reading answers) — what highmark itself costs:
start-up of the run, JSON parsing, conversion, writing the target, checkpoints. The fakes run in
this process: with 0 ms latency their own work (GraphQL execution, JQL) is part of the HTTP time.

    .venv/bin/python bench/connectors.py [--quick] [--target URL] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import highmark
from highmark import db
from highmark.connectors import http
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira

LATENCIES = (0.0, 0.05)


@dataclass
class Result:
    connector: str
    keys: int
    latency_ms: int
    phase: str
    records: int
    seconds: float
    http_seconds: float
    requests: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def outside_share(self) -> float:
        return max(0.0, self.seconds - self.http_seconds) / self.seconds if self.seconds else 0.0


@contextmanager
def client_stats() -> Iterator[list[http.ApiClient]]:
    """Every ApiClient made meanwhile (their stats say how long the HTTP round trips took)."""
    made: list[http.ApiClient] = []
    original = http.ApiClient.__init__

    def record(self: http.ApiClient, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    http.ApiClient.__init__ = record  # type: ignore[method-assign]
    try:
        yield made
    finally:
        http.ApiClient.__init__ = original  # type: ignore[method-assign]


def run(project: highmark.Project, job: str) -> tuple[Any, float, float, int]:
    with client_stats() as clients:
        started = time.perf_counter()
        record = project.run(job)
        seconds = time.perf_counter() - started
    if record.run_status.value != "success":
        raise SystemExit(f"{job}: {record.run_status.value}: {record.error_message}")
    http_seconds = sum(c.stats.http_seconds for c in clients)
    return record, seconds, http_seconds, sum(c.stats.requests for c in clients)


def sync_twice(
    project: highmark.Project, connector: str, keys: int, latency: float
) -> list[Result]:
    """A first sync, then one with nothing changed."""
    results = []
    for phase in ("first sync", "nothing changed"):
        record, seconds, http_seconds, requests = run(project, "sync")
        latency_ms = int(latency * 1000)
        results.append(
            Result(
                connector,
                keys,
                latency_ms,
                phase,
                record.rows_read,
                seconds,
                http_seconds,
                requests,
            )
        )
    return results


def write_project(folder: Path, target: str, connection: str, source: str) -> highmark.Project:
    (folder / "highmark.yml").write_text(
        f"control: sqlite:///{folder / 'control.db'}\n"
        f"connections:\n  {connection}\n  dw: {target}\n"
        f"jobs:\n  sync:\n    load_type: incremental\n    source: {source}\n"
        "    target: {connection: dw}\n"
    )
    return highmark.Project.load(folder / "highmark.yml")


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


def bench_github(
    keys: int, prs: int, latency: float, target_of: Callable[[Path], str]
) -> list[Result]:
    with FakeGitHub(latency=latency) as github, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        repositories = [f"acme/repo{i}" for i in range(keys)]
        for name in repositories:
            github.seed(name, prs // keys, commits=3, reviews=1, comments=2)
        expected = {"pull_requests": 0, "commits": 0, "reviews": 0, "comments": 0}
        for name in repositories:
            for pr in github.prs(name):
                expected["pull_requests"] += 1
                expected["commits"] += len(github.commits(name, pr.number))
                expected["reviews"] += len(github.reviews(name, pr.number))
                expected["comments"] += len(github.comments(name, pr.number))
        target = target_of(folder)
        project = write_project(
            folder,
            target,
            f"github: {{type: github, token: {github.token}, url: {github.graphql_url}}}",
            f"{{connection: github, repositories: [{', '.join(repositories)}], page_size: 50}}",
        )
        results = sync_twice(project, "github", keys, latency)
        for entity, n in expected.items():
            found = count(target, folder, f"github_{entity}")
            if found != n:
                raise SystemExit(f"github_{entity}: {found} rows, the fake has {n}")
        db.dispose_all()
        return results


def bench_jira(
    keys: int, issues: int, latency: float, target_of: Callable[[Path], str]
) -> list[Result]:
    with FakeJira(latency=latency) as jira, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        projects = [f"P{i}" for i in range(keys)]
        for key in projects:
            jira.add_project(key)
            jira.seed(key, issues // keys)
        target = target_of(folder)
        project = write_project(
            folder,
            target,
            f"jira: {{type: jira, url: {jira.url}, email: {jira.user.email}, "
            "token: jira-api-token}",
            f"{{connection: jira, projects: [{', '.join(projects)}], max_results: 100}}",
        )
        results = sync_twice(project, "jira", keys, latency)
        found = count(target, folder, "jira_issues")
        if found != len(jira.rows(*projects)):
            raise SystemExit(f"jira_issues: {found} rows, the fake has {len(jira.rows(*projects))}")
        db.dispose_all()
        return results


def table(results: list[Result]) -> str:
    lines = [
        "| connector | keys | latency | phase | records | seconds | records/s | requests "
        "| outside HTTP |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.connector} | {r.keys} | {r.latency_ms} ms | {r.phase} | {r.records:,} | "
            f"{r.seconds:.2f} | {r.rate:,.0f} | {r.requests} | {r.outside_share:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the records")
    parser.add_argument("--target", help="a PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--out", type=Path, help="write the result table (markdown) here")
    args = parser.parse_args()
    scale = 10 if args.quick else 1

    def target_of(folder: Path) -> str:
        return args.target or f"sqlite:///{folder / 'dw.db'}"

    results: list[Result] = []
    for latency in LATENCIES:
        for keys in (1, 4):
            results += bench_github(keys, 1000 // scale, latency, target_of)
            results += bench_jira(keys, 10_000 // scale, latency, target_of)
            print(table(results), file=sys.stderr)
    report = (
        f"# API connectors against their fakes\n\n"
        f"`.venv/bin/python bench/connectors.py{' --quick' if args.quick else ''}`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"target {'PostgreSQL' if args.target else 'SQLite'}. GitHub: "
        f"{1000 // scale:,} pull requests with 3 commits, 1 review and 2 comments each "
        f"({7000 // scale:,} records), 50 pull requests a page; Jira: {10_000 // scale:,} issues, "
        "100 a page. Each verified (the target holds the fake's records).\n\n"
        + table(results)
        + "\n"
    )
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
