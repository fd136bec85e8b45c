"""The test-facing side of the fake Jira: building and changing the site (projects, users,
issues, comments) and reading back what a loader's target should hold.

Every method takes the server's lock, so a test may call it while a connector is paging (or
from a ``before(nth, …)`` hook). Writes are stamped with the fake clock; a write becomes
visible to search ``index_lag`` seconds later (the server's setting, or the ``index_lag``
argument of one call).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from tests.fakes.base import FakeClock

from .model import Comment, Issue, IssueState, Project, Site, User, to_ms
from .render import Renderer, select_fields

_UPDATABLE = {
    "summary",
    "issue_type",
    "status",
    "assignee",
    "reporter",
    "priority",
    "labels",
    "description",
}


class SiteControls:
    """Mixed into :class:`~.server.FakeJira`; see the module docstring."""

    site: Site
    clock: FakeClock
    lock: threading.RLock
    index_lag: float
    site_zone: str
    default_user: User

    def _base_url(self) -> str:
        raise NotImplementedError

    def _lag_ms(self, index_lag: float | None) -> int:
        return int((self.index_lag if index_lag is None else index_lag) * 1000)

    # ------------------------------------------------------------------ site

    def add_project(self, key: str, *, name: str | None = None) -> Project:
        """A project (ids from 10000); its issues are ``KEY-1``, ``KEY-2``…"""
        with self.lock:
            return self.site.add_project(key, name)

    def add_user(
        self,
        email: str,
        token: str | None = None,
        *,
        display_name: str | None = None,
        time_zone: str | None = None,
        projects: Iterable[str] | None = None,
        scoped: bool = False,
    ) -> User:
        """An account; with a ``token`` it can call the API, seeing only ``projects`` if given.
        ``time_zone=None`` means the site's zone."""
        with self.lock:
            return self.site.add_user(
                email,
                token=token,
                display_name=display_name,
                time_zone=time_zone,
                projects=None if projects is None else frozenset(p.upper() for p in projects),
                scoped=scoped,
            )

    def _user(self, email: str | None) -> User:
        user = self.default_user if email is None else self.site.user(email)
        if user is None:
            raise KeyError(email)
        return user

    def revoke_token(self, email: str | None = None) -> None:
        """Revoke a user's API token (default: the default user's): every later call is 401."""
        with self.lock:
            self._user(email).revoked = True

    def restrict(self, projects: Iterable[str] | None, *, email: str | None = None) -> None:
        """Limit what a user can browse to ``projects`` (``None``: everything again)."""
        with self.lock:
            user = self._user(email)
            user.projects = None if projects is None else frozenset(p.upper() for p in projects)

    # ------------------------------------------------------------------ issues

    def add_issue(
        self,
        project: str,
        *,
        summary: str,
        issue_type: str = "Task",
        status: str = "To Do",
        assignee: str | None = None,
        reporter: str | None = None,
        priority: str = "Medium",
        labels: Sequence[str] = (),
        description: str | None = None,
        created: datetime | None = None,
        updated: datetime | None = None,
        index_lag: float | None = None,
    ) -> Issue:
        """A new issue ``PROJECT-n`` with the next numeric id. ``created`` defaults to the fake
        clock's now, ``updated`` to ``created``; people are given by email or account id."""
        with self.lock:
            now = self.clock.now()
            created_ms = to_ms(created or now)
            state = IssueState(
                summary=summary,
                issue_type=issue_type,
                status=status,
                assignee=self.site.person(assignee),
                reporter=self.site.person(reporter),
                priority=priority,
                labels=tuple(labels),
                description=description,
                created_ms=created_ms,
                updated_ms=to_ms(updated) if updated else created_ms,
            )
            return self.site.add_issue(project, state, to_ms(now), self._lag_ms(index_lag))

    def update_issue(
        self, key: str, at: datetime | None = None, *, index_lag: float | None = None, **fields: Any
    ) -> Issue:
        """Change ``fields`` (summary, issue_type, status, assignee, reporter, priority, labels,
        description) and set ``updated`` to ``at`` (default: the fake clock's now)."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise TypeError(f"cannot update {sorted(unknown)}")
        with self.lock:
            issue = self.issue(key)
            if issue.deleted:
                raise KeyError(key)
            now = self.clock.now()
            for person in ("assignee", "reporter"):
                if person in fields:
                    fields[person] = self.site.person(fields[person])
            if "labels" in fields:
                fields["labels"] = tuple(fields["labels"])
            state = Site.changed(issue.state, updated_ms=to_ms(at or now), **fields)
            self.site.update_issue(issue, state, to_ms(now), self._lag_ms(index_lag))
            return issue

    def delete_issue(self, key: str, *, index_lag: float | None = None) -> None:
        """Delete an issue: gone at once from the issue endpoints, from search after the lag."""
        with self.lock:
            issue = self.issue(key)
            self.site.delete_issue(issue, to_ms(self.clock.now()), self._lag_ms(index_lag))

    def add_comment(
        self,
        key: str,
        body: str,
        *,
        author: str | None = None,
        at: datetime | None = None,
        touch: bool = True,
    ) -> Comment:
        """A comment (by ``author``, email or account id; default the default user); like Jira,
        it bumps the issue's ``updated`` unless ``touch=False``."""
        with self.lock:
            issue = self.issue(key)
            when = at or self.clock.now()
            account = self.site.person(author) or self.default_user.account_id
            comment = self.site.add_comment(issue, account, body, to_ms(when))
            if touch:
                self.update_issue(key, when)
            return comment

    def seed(
        self,
        project: str,
        n: int,
        *,
        start: datetime | None = None,
        step: float = 60.0,
        summary: str = "Issue {i}",
        issue_types: Sequence[str] = ("Task",),
        statuses: Sequence[str] = ("To Do",),
        assignees: Sequence[str | None] = (None,),
        index_lag: float = 0.0,
    ) -> list[Issue]:
        """``n`` issues at once (fast enough for tens of thousands): the i-th (from 0) created
        and updated at ``start + i*step`` seconds (default: the last one ``step`` before now),
        cycling through ``issue_types``, ``statuses`` and ``assignees``; already indexed unless
        ``index_lag`` says otherwise."""
        with self.lock:
            now = self.clock.now()
            first = start or now - timedelta(seconds=step * n)
            base_ms, now_ms, lag_ms = to_ms(first), to_ms(now), self._lag_ms(index_lag)
            people = [self.site.person(a) for a in assignees]
            issues = []
            for i in range(n):
                at = base_ms + int(i * step * 1000)
                state = IssueState(
                    summary=summary.format(i=i),
                    issue_type=issue_types[i % len(issue_types)],
                    status=statuses[i % len(statuses)],
                    assignee=people[i % len(people)],
                    reporter=self.default_user.account_id,
                    priority="Medium",
                    labels=(),
                    description=None,
                    created_ms=at,
                    updated_ms=at,
                )
                issues.append(self.site.add_issue(project, state, now_ms, lag_ms))
            return issues

    # ------------------------------------------------------------------ reading back

    def issue(self, ref: str) -> Issue:
        """An issue (deleted ones too) by key or id; ``KeyError`` if it never existed."""
        with self.lock:
            found = self.site.issue(ref)
            if found is None:
                raise KeyError(ref)
            return found

    def issues(self, *projects: str, include_deleted: bool = False) -> list[Issue]:
        """The issues (of ``projects``, default all), by ascending id, as they are now."""
        wanted = {p.upper() for p in projects}
        with self.lock:
            return [
                issue
                for issue in self.site.issues.values()
                if (not wanted or issue.project in wanted)
                and (include_deleted or not issue.deleted)
            ]

    def rows(self, *projects: str) -> list[dict[str, object]]:
        """:meth:`Issue.row` of every live issue: what a complete, current load should hold."""
        return [issue.row() for issue in self.issues(*projects)]

    def issue_json(self, ref: str, fields: str = "*navigable") -> dict[str, Any]:
        """An issue's current JSON as the API renders it (``fields`` as in a request)."""
        with self.lock:
            issue = self.issue(ref)
            renderer = Renderer(self.site, self._base_url(), self.site_zone)
            return renderer.issue(issue, issue.state, select_fields([fields], default="*all"))

    def searchable(self, ref: str) -> bool:
        """Whether search sees the issue now (index lag and deletes considered)."""
        with self.lock:
            return self.issue(ref).indexed(to_ms(self.clock.now())) is not None
