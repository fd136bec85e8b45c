"""The fake GitHub's records, as a test reads them back: frozen snapshots (a change replaces a
record, so what an accessor returned never changes under a test), snake_case fields that the
resolvers serve under their GraphQL names (``full_database_id`` is ``fullDatabaseId``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar


@dataclass(frozen=True)
class Repository:
    typename: ClassVar[str] = "Repository"
    id: str
    full_database_id: int
    owner: str
    name: str

    @property
    def name_with_owner(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def url(self) -> str:
        return f"https://github.com/{self.name_with_owner}"


@dataclass(frozen=True)
class PullRequest:
    typename: ClassVar[str] = "PullRequest"
    id: str
    full_database_id: int
    repo: str  # nameWithOwner
    number: int
    title: str
    body: str
    state: str  # OPEN | CLOSED | MERGED
    is_draft: bool
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    merged_at: datetime | None
    author: str | None  # login; None for a deleted user ("ghost")

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}/pull/{self.number}"

    @property
    def closed(self) -> bool:
        return self.state != "OPEN"

    @property
    def merged(self) -> bool:
        return self.state == "MERGED"


@dataclass(frozen=True)
class Commit:
    """A ``PullRequestCommit`` (``id``) and its ``Commit`` (``commit_id``, ``oid``…)."""

    typename: ClassVar[str] = "PullRequestCommit"
    id: str
    commit_id: str
    oid: str
    message: str
    committed_date: datetime
    authored_date: datetime
    seq: int  # the commit's place in the PR's history (its sort key)


@dataclass(frozen=True)
class Review:
    typename: ClassVar[str] = "PullRequestReview"
    id: str
    full_database_id: int
    state: str  # PENDING | COMMENTED | APPROVED | CHANGES_REQUESTED | DISMISSED
    body: str
    submitted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    author: str | None


@dataclass(frozen=True)
class Comment:
    """A conversation comment (``IssueComment``)."""

    typename: ClassVar[str] = "IssueComment"
    id: str
    full_database_id: int
    body: str
    created_at: datetime
    updated_at: datetime
    author: str | None
