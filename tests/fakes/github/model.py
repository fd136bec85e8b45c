"""The fake GitHub's data: repositories, pull requests and their commits, reviews and
conversation comments, with the mutations a test makes between pages and the accessors it
asserts with.

Records (``records.py``) are frozen snapshots: a mutation replaces them. Timestamps come from
the fake clock, truncated to the second like GitHub's; a change to a PR's children bumps its
``updated_at`` as GitHub does (new commits, reviews and comments do; editing or deleting a
comment does not unless ``bump_pr=True``). Ids are opaque (``PR_kwDO…``), unique and stable;
database ids start above 2**31 so 32-bit columns fail loudly.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from tests.fakes.base import FakeClock
from tests.fakes.github.records import Comment, Commit, PullRequest, Repository, Review

Count = int | Callable[[int], int]


def _node_id(prefix: str, *parts: int) -> str:
    raw = b"".join(p.to_bytes(8, "big") for p in parts)
    return f"{prefix}_kwDO" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class PRState:
    pr: PullRequest
    commits: list[Commit] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)


@dataclass
class RepoState:
    repo: Repository
    prs: dict[int, PRState] = field(default_factory=dict)
    next_number: int = 1


class GitHubModel:
    """The data and its test API; :class:`FakeGitHub` mixes it in (every method takes
    ``self.lock``, so a test may mutate while a client pages)."""

    clock: FakeClock
    lock: threading.RLock

    def __init__(self, clock: FakeClock, lock: threading.RLock) -> None:
        self.clock = clock
        self.lock = lock
        self._repos: dict[str, RepoState] = {}  # by lower-case nameWithOwner
        self._owners: dict[str, tuple[str, int]] = {}  # node id -> (repo key, PR number or 0)
        self._next_id = 3_000_000_000

    # ------------------------------------------------------------------ repositories and PRs

    def add_repo(self, full_name: str) -> Repository:
        """Add ``owner/name`` (names are case-insensitive, as on GitHub); returns it if present."""
        with self.lock:
            key = full_name.lower()
            if key in self._repos:
                return self._repos[key].repo
            owner, name = full_name.split("/")
            db_id = self._new_id()
            repo = Repository(_node_id("R", db_id), db_id, owner, name)
            self._repos[key] = RepoState(repo)
            self._owners[repo.id] = (key, 0)
            return repo

    def remove_repo(self, full_name: str) -> None:
        """Delete a repository: queries for it answer ``NOT_FOUND`` from now on."""
        with self.lock:
            del self._repos[full_name.lower()]

    def add_pr(
        self,
        repo: str,
        number: int | None = None,
        *,
        title: str | None = None,
        body: str = "",
        state: str = "OPEN",
        is_draft: bool = False,
        author: str | None = "alice",
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> PullRequest:
        """Open a PR in ``repo`` (added if missing); ``number`` defaults to the next free one.
        A CLOSED or MERGED PR is closed (and merged) at its ``updated_at``."""
        with self.lock:
            self.add_repo(repo)
            rs = self._repos[repo.lower()]
            number = rs.next_number if number is None else number
            if number in rs.prs:
                raise ValueError(f"{repo}#{number} exists")
            rs.next_number = max(rs.next_number, number + 1)
            created = self._at(created_at)
            updated = self._at(updated_at or created)
            db_id = self._new_id()
            pr = PullRequest(
                id=_node_id("PR", rs.repo.full_database_id, db_id),
                full_database_id=db_id,
                repo=rs.repo.name_with_owner,
                number=number,
                title=title if title is not None else f"Change #{number}",
                body=body,
                state=state,
                is_draft=is_draft,
                created_at=created,
                updated_at=updated,
                closed_at=updated if state != "OPEN" else None,
                merged_at=updated if state == "MERGED" else None,
                author=author,
            )
            rs.prs[number] = PRState(pr)
            self._owners[pr.id] = (repo.lower(), number)
            return pr

    def update_pr(
        self,
        repo: str,
        number: int,
        *,
        at: datetime | None = None,
        title: str | None = None,
        body: str | None = None,
        state: str | None = None,
        is_draft: bool | None = None,
    ) -> PullRequest:
        """Change a PR (``None`` leaves a field as it is) and bump its ``updated_at`` to ``at``
        (default now). Closing sets ``closed_at``; merging also ``merged_at``; reopening clears
        ``closed_at``."""
        with self.lock:
            ps = self._pr_state(repo, number)
            when = self._at(at)
            pr = ps.pr
            if state is not None and state != pr.state:
                closed_at = None if state == "OPEN" else when
                merged_at = when if state == "MERGED" else None
                pr = replace(pr, state=state, closed_at=closed_at, merged_at=merged_at)
            pr = replace(
                pr,
                title=pr.title if title is None else title,
                body=pr.body if body is None else body,
                is_draft=pr.is_draft if is_draft is None else is_draft,
                updated_at=when,
            )
            ps.pr = pr
            return pr

    def delete_pr(self, repo: str, number: int) -> None:
        """Delete a PR and its children (GitHub support does, for spam): its ids answer
        ``NOT_FOUND`` from now on."""
        with self.lock:
            ps = self._repo_state(repo).prs.pop(number)
            for record in (ps.pr, *ps.commits, *ps.reviews, *ps.comments):
                self._owners.pop(record.id, None)

    def touch_pr(self, repo: str, number: int, at: datetime | None = None) -> PullRequest:
        """Bump a PR's ``updated_at`` to ``at`` (default the fake clock's now)."""
        return self.update_pr(repo, number, at=at)

    # ------------------------------------------------------------------ children

    def add_commits(
        self,
        repo: str,
        number: int,
        n: int = 1,
        *,
        at: datetime | None = None,
        message: str | None = None,
    ) -> list[Commit]:
        """Push ``n`` commits (committed and authored ``at``, default now) onto a PR."""
        with self.lock:
            ps = self._pr_state(repo, number)
            when = self._at(at)
            new = [self._commit(ps, when, message) for _ in range(n)]
            ps.commits.extend(new)
            if new:
                ps.pr = replace(ps.pr, updated_at=when)
            return new

    def force_push(
        self, repo: str, number: int, keep: int, *, add: int = 0, at: datetime | None = None
    ) -> list[Commit]:
        """Rewrite a PR's branch: keep its first ``keep`` commits, drop the rest, push ``add``
        new ones; bumps ``updated_at``. Returns the PR's commits afterwards."""
        with self.lock:
            ps = self._pr_state(repo, number)
            when = self._at(at)
            for gone in ps.commits[keep:]:
                self._owners.pop(gone.id, None)
            del ps.commits[keep:]
            ps.commits.extend(self._commit(ps, when, None) for _ in range(add))
            ps.pr = replace(ps.pr, updated_at=when)
            return list(ps.commits)

    def add_review(
        self,
        repo: str,
        number: int,
        *,
        state: str = "APPROVED",
        author: str | None = "bob",
        body: str = "",
        at: datetime | None = None,
    ) -> Review:
        """Submit a review (a PENDING one has no ``submitted_at``); bumps the PR."""
        with self.lock:
            ps = self._pr_state(repo, number)
            when = self._at(at)
            db_id = self._new_id()
            review = Review(
                id=_node_id("PRR", db_id),
                full_database_id=db_id,
                state=state,
                body=body,
                submitted_at=None if state == "PENDING" else when,
                created_at=when,
                updated_at=when,
                author=author,
            )
            ps.reviews.append(review)
            self._owners[review.id] = (repo.lower(), number)
            ps.pr = replace(ps.pr, updated_at=when)
            return review

    def delete_review(self, repo: str, number: int, review_id: str) -> None:
        """Remove a review without a trace (GitHub keeps no tombstone)."""
        with self.lock:
            ps = self._pr_state(repo, number)
            ps.reviews = [r for r in ps.reviews if r.id != review_id]
            self._owners.pop(review_id, None)

    def add_comment(
        self,
        repo: str,
        number: int,
        *,
        body: str = "Looks good.",
        author: str | None = "carol",
        at: datetime | None = None,
    ) -> Comment:
        """Add a conversation comment; bumps the PR."""
        with self.lock:
            ps = self._pr_state(repo, number)
            when = self._at(at)
            comment = self._comment(ps, when, body, author)
            ps.pr = replace(ps.pr, updated_at=when)
            return comment

    def edit_comment(
        self,
        repo: str,
        number: int,
        comment_id: str,
        *,
        body: str | None = None,
        at: datetime | None = None,
        bump_pr: bool = False,
    ) -> Comment:
        """Edit a comment (its ``updated_at`` moves to ``at``); the PR's ``updated_at`` moves
        only with ``bump_pr`` (whether GitHub bumps it is unconfirmed)."""
        with self.lock:
            ps = self._pr_state(repo, number)
            when = self._at(at)
            index = next(i for i, c in enumerate(ps.comments) if c.id == comment_id)
            old = ps.comments[index]
            ps.comments[index] = replace(
                old, body=old.body if body is None else body, updated_at=when
            )
            if bump_pr:
                ps.pr = replace(ps.pr, updated_at=when)
            return ps.comments[index]

    def delete_comment(
        self,
        repo: str,
        number: int,
        comment_id: str,
        *,
        bump_pr: bool = False,
        at: datetime | None = None,
    ) -> None:
        """Remove a comment without a trace; the PR moves only with ``bump_pr``."""
        with self.lock:
            ps = self._pr_state(repo, number)
            ps.comments = [c for c in ps.comments if c.id != comment_id]
            self._owners.pop(comment_id, None)
            if bump_pr:
                ps.pr = replace(ps.pr, updated_at=self._at(at))

    # ------------------------------------------------------------------ bulk

    def seed(
        self,
        repo: str,
        prs: int,
        *,
        commits: Count = 0,
        reviews: Count = 0,
        comments: Count = 0,
        start: datetime | None = None,
        step: float = 60.0,
        authors: tuple[str | None, ...] = ("alice", "bob", "carol"),
    ) -> list[PullRequest]:
        """Add ``prs`` PRs quickly (benchmarks). PR ``i`` (from 0) is created and last updated
        at ``start + i * step`` seconds (default: the last one ``step`` before now; ``step=0``
        gives every PR one timestamp), with its children at that moment. Counts are ints or
        functions of ``i``."""

        def count(c: Count, i: int) -> int:
            return c(i) if callable(c) else c

        with self.lock:
            base = self._at(start) if start else self._at(None) - timedelta(seconds=prs * step)
            made: list[PullRequest] = []
            for i in range(prs):
                when = base + timedelta(seconds=int(i * step))
                author = authors[i % len(authors)]
                pr = self.add_pr(repo, author=author, created_at=when)
                ps = self._pr_state(repo, pr.number)
                ps.commits.extend(self._commit(ps, when, None) for _ in range(count(commits, i)))
                for _ in range(count(reviews, i)):
                    self.add_review(repo, pr.number, author=author, at=when)
                for _ in range(count(comments, i)):
                    self._comment(ps, when, "Looks good.", author)
                made.append(ps.pr)
            return made

    # ------------------------------------------------------------------ accessors

    def repos(self) -> list[Repository]:
        with self.lock:
            return [rs.repo for rs in self._repos.values()]

    def prs(self, repo: str) -> list[PullRequest]:
        """Every PR of ``repo`` as it is now, by number (what a full load's target holds)."""
        with self.lock:
            return [ps.pr for _, ps in sorted(self._repo_state(repo).prs.items())]

    def pr(self, repo: str, number: int) -> PullRequest:
        with self.lock:
            return self._pr_state(repo, number).pr

    def commits(self, repo: str, number: int) -> list[Commit]:
        with self.lock:
            return list(self._pr_state(repo, number).commits)

    def reviews(self, repo: str, number: int) -> list[Review]:
        with self.lock:
            return list(self._pr_state(repo, number).reviews)

    def comments(self, repo: str, number: int) -> list[Comment]:
        with self.lock:
            return list(self._pr_state(repo, number).comments)

    # ------------------------------------------------------------------ lookups (lock held)

    def find_repo(self, full_name: str) -> RepoState | None:
        return self._repos.get(full_name.lower())

    def find_node(self, node_id: str) -> tuple[RepoState, object] | None:
        """The record a global id names now, with its repository (``None`` if gone)."""
        owner = self._owners.get(node_id)
        rs = self._repos.get(owner[0]) if owner else None
        if owner is None or rs is None:
            return None
        if owner[1] == 0:
            return rs, rs.repo
        ps = rs.prs.get(owner[1])
        if ps is None:
            return None
        if ps.pr.id == node_id:
            return rs, ps.pr
        children: list[Commit | Review | Comment] = [*ps.commits, *ps.reviews, *ps.comments]
        for child in children:
            if child.id == node_id:
                return rs, child
        return None

    def children(self, pr: PullRequest) -> PRState:
        return self._repos[pr.repo.lower()].prs[pr.number]

    # ------------------------------------------------------------------ helpers

    def _repo_state(self, repo: str) -> RepoState:
        try:
            return self._repos[repo.lower()]
        except KeyError:
            raise KeyError(f"no repository {repo!r} in the fake") from None

    def _pr_state(self, repo: str, number: int) -> PRState:
        try:
            return self._repo_state(repo).prs[number]
        except KeyError:
            raise KeyError(f"no PR {repo}#{number} in the fake") from None

    def _at(self, at: datetime | None) -> datetime:
        when = self.clock.now() if at is None else at
        if when.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return when.replace(microsecond=0)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _commit(self, ps: PRState, when: datetime, message: str | None) -> Commit:
        db_id = self._new_id()
        oid = hashlib.sha1(f"{ps.pr.id}:{db_id}".encode()).hexdigest()
        commit = Commit(
            id=_node_id("PURC", ps.pr.full_database_id, db_id),
            commit_id=_node_id("C", db_id),
            oid=oid,
            message=message or f"Commit {len(ps.commits) + 1} of #{ps.pr.number}",
            committed_date=when,
            authored_date=when,
            seq=db_id,
        )
        self._owners[commit.id] = (ps.pr.repo.lower(), ps.pr.number)
        return commit

    def _comment(self, ps: PRState, when: datetime, body: str, author: str | None) -> Comment:
        db_id = self._new_id()
        comment = Comment(_node_id("IC", db_id), db_id, body, when, when, author)
        ps.comments.append(comment)
        self._owners[comment.id] = (ps.pr.repo.lower(), ps.pr.number)
        return comment
