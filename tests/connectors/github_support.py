"""Helpers of the GitHub connector's tests: a project file pointing a GitHub job at the fake, the
fake's model as the rows the target should hold, and the target's rows read back comparably.

The target is compared with the model column by column (``raw`` and the ``synced_run_id`` stamp
aside; ``raw`` is checked on its own), every value normalised so that SQLite, PostgreSQL and
MariaDB compare equal: timestamps as aware UTC datetimes, booleans as bools.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.fakes.github import FakeGitHub, GraphQLCall

JOB = "github_prs"
ENTITIES = ("pull_requests", "commits", "reviews", "comments")
COLUMNS: dict[str, tuple[str, ...]] = {
    "pull_requests": (
        "id", "repository", "number", "title", "state", "is_draft", "author_login", "url",
        "created_at", "updated_at", "closed_at", "merged_at",
    ),
    "commits": (
        "id", "pull_request_id", "repository", "oid", "message", "committed_date",
        "authored_date",
    ),
    "reviews": (
        "id", "pull_request_id", "repository", "state", "author_login", "submitted_at",
        "created_at", "updated_at",
    ),
    "comments": (
        "id", "pull_request_id", "repository", "author_login", "body", "created_at",
        "updated_at",
    ),
}  # fmt: skip
TIMESTAMPS = frozenset(
    {"created_at", "updated_at", "closed_at", "merged_at", "committed_date", "authored_date"}
    | {"submitted_at"}
)
Rows = dict[str, list[dict[str, Any]]]


# ------------------------------------------------------------------------------ the project


def github_job(repositories: Iterable[str], **source: Any) -> dict[str, Any]:
    """An incremental GitHub job from the connection ``github`` into ``dw``."""
    return {
        "load_type": "incremental",
        "source": {"connection": "github", "repositories": list(repositories), **source},
        "target": {"connection": "dw"},
    }


def write_github_project(
    directory: Path,
    fake: FakeGitHub,
    target_url: str,
    job: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    url: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """``highmark.yml`` in ``directory``: a SQLite control store beside it, the connection
    ``github`` on the fake, ``dw`` the target, and the job ``github_prs``."""
    document: dict[str, Any] = {
        "control": f"sqlite:///{directory / 'control.db'}",
        "connections": {
            "github": {
                "type": "github",
                "token": token or fake.token,
                "url": url or fake.graphql_url,
            },
            "dw": target_url,
        },
        "jobs": {JOB: job or github_job(["acme/api", "acme/web"])},
        **(extra or {}),
    }
    path = directory / "highmark.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# ------------------------------------------------------------------------------ the data


def seed_two_repositories(fake: FakeGitHub) -> None:
    """``acme/api``: 7 PRs with commits, reviews and comments, #3 with 250 commits and #4 with
    130 comments (longer than a nested page); ``acme/web``: 6 PRs, some by a deleted user, one
    merged, one closed, one a draft, a comment with quotes, a backslash and an emoji. Every PR
    before the fake's now, a minute apart, newest last."""
    fake.seed(
        "acme/api",
        7,
        commits=lambda i: 250 if i == 2 else 3,
        reviews=lambda i: i % 3,
        comments=lambda i: 130 if i == 3 else 2,
    )
    web = fake.seed("acme/web", 6, commits=1, reviews=1, comments=lambda i: i,
                    authors=("alice", None))  # fmt: skip
    fake.update_pr("acme/web", 2, state="MERGED", at=web[1].updated_at)
    fake.update_pr("acme/web", 3, state="CLOSED", at=web[2].updated_at)
    fake.update_pr(
        "acme/web", 4, is_draft=True, title='WIP: ünïcode \\ "quoted"', at=web[3].updated_at
    )
    fake.add_comment("acme/web", 5, body='It\'s "done" \\o/ 🚀\nnext line', at=web[4].updated_at)


def model_rows(fake: FakeGitHub, repositories: Iterable[str]) -> Rows:
    """What the target should hold: every PR of ``repositories`` and its children, now."""
    rows: Rows = {name: [] for name in ENTITIES}
    for repo in repositories:
        for pr in fake.prs(repo):
            rows["pull_requests"].append(
                {
                    "id": pr.id, "repository": pr.repo, "number": pr.number, "title": pr.title,
                    "state": pr.state, "is_draft": pr.is_draft, "author_login": pr.author,
                    "url": pr.url, "created_at": pr.created_at, "updated_at": pr.updated_at,
                    "closed_at": pr.closed_at, "merged_at": pr.merged_at,
                }
            )  # fmt: skip
            parent = {"pull_request_id": pr.id, "repository": pr.repo}
            rows["commits"] += [
                {
                    "id": c.id, **parent, "oid": c.oid, "message": c.message,
                    "committed_date": c.committed_date, "authored_date": c.authored_date,
                }
                for c in fake.commits(repo, pr.number)
            ]  # fmt: skip
            rows["reviews"] += [
                {
                    "id": r.id, **parent, "state": r.state, "author_login": r.author,
                    "submitted_at": r.submitted_at, "created_at": r.created_at,
                    "updated_at": r.updated_at,
                }
                for r in fake.reviews(repo, pr.number)
            ]  # fmt: skip
            rows["comments"] += [
                {
                    "id": c.id, **parent, "author_login": c.author, "body": c.body,
                    "created_at": c.created_at, "updated_at": c.updated_at,
                }
                for c in fake.comments(repo, pr.number)
            ]  # fmt: skip
    return {name: sorted(found, key=lambda r: r["id"]) for name, found in rows.items()}


def record_count(rows: Rows) -> int:
    return sum(len(found) for found in rows.values())


# ------------------------------------------------------------------------------ the target


def normal(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in TIMESTAMPS:
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert isinstance(value, datetime), (column, value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if column == "is_draft":
        return bool(value)
    if column == "number":
        return int(value)
    return value


def target_rows(
    engine: Engine, prefix: str = "github_", entities: Iterable[str] = ENTITIES
) -> Rows:
    """Every row of the tables of ``entities``, normalised, by id."""
    rows: Rows = {}
    with engine.connect() as conn:
        for name in entities:
            columns = COLUMNS[name]
            found = conn.execute(text(f"SELECT {', '.join(columns)} FROM {prefix}{name}")).all()
            rows[name] = sorted(
                ({c: normal(c, v) for c, v in zip(columns, row, strict=True)} for row in found),
                key=lambda r: r["id"],
            )
    return rows


def target_rows_of(engine: Engine, entity: str, prefix: str = "github_") -> list[dict[str, Any]]:
    return target_rows(engine, prefix)[entity]


def raw_objects(engine: Engine, entity: str, prefix: str = "github_") -> dict[str, Any]:
    """The ``raw`` column of ``entity``'s rows, parsed, by id."""
    with engine.connect() as conn:
        found = conn.execute(text(f"SELECT id, raw FROM {prefix}{entity}")).all()
    return {row[0]: json.loads(row[1]) if isinstance(row[1], str) else row[1] for row in found}


def assert_target_equals_model(
    engine: Engine, fake: FakeGitHub, repositories: Iterable[str]
) -> None:
    expected, actual = model_rows(fake, repositories), target_rows(engine)
    for name in ENTITIES:
        assert len(actual[name]) == len(expected[name]), name
        for got, want in zip(actual[name], expected[name], strict=True):
            assert got == want, name


# ------------------------------------------------------------------------------ the request log


def page_calls(fake: FakeGitHub, repo: str | None = None) -> list[GraphQLCall]:
    """The pull-request list queries (of ``repo``), in order."""
    return [
        c
        for c in fake.calls
        if (c.query or "").lstrip().startswith("query PullRequestPage")
        if repo is None or f"{c.variables.get('owner')}/{c.variables.get('name')}" == repo
    ]


def child_calls(fake: FakeGitHub) -> list[GraphQLCall]:
    """The nested-page queries (one connection of one PR each), in order."""
    return [
        c for c in fake.calls if (c.query or "").lstrip().startswith("query PullRequestChildren")
    ]


def connection_of(call: GraphQLCall) -> str:
    """Which connection a nested-page query drains."""
    for name in ("commits", "reviews", "comments"):
        if f"{name}(first:" in (call.query or ""):
            return name
    raise AssertionError(call.query)
