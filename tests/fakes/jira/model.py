"""The fake Jira site's data: projects, users, issues (with the versions the search index sees)
and comments, plus the status and issue-type registries.

Times are epoch milliseconds (UTC) inside the model: Jira keeps millisecond timestamps, and
integers compare and sort fast enough for tens of thousands of issues.

**Index lag.** Every write to an issue appends a *version* stamped with the instant it becomes
visible to search (the write's time plus the lag). Search reads :meth:`Issue.indexed`; every
other endpoint reads :attr:`Issue.state`, the current one. Not thread-safe on its own: the
server holds its lock around every call.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

FIRST_ID = 10000


def to_ms(when: datetime) -> int:
    """Epoch milliseconds of an aware datetime (sub-millisecond parts are dropped)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime: give the fake aware datetimes")
    delta = when.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=(ms % 1000) * 1000)


@dataclass(frozen=True)
class Status:
    id: str
    name: str
    category: str  # statusCategory key: "new", "indeterminate", "done"


@dataclass(frozen=True)
class IssueType:
    id: str
    name: str
    hierarchy_level: int = 0
    subtask: bool = False


_CATEGORY = {"to do": "new", "open": "new", "backlog": "new", "done": "done", "closed": "done"}
DEFAULT_STATUSES = (
    Status("10000", "To Do", "new"),
    Status("3", "In Progress", "indeterminate"),
    Status("10001", "Done", "done"),
)
DEFAULT_ISSUE_TYPES = (
    IssueType("10000", "Epic", 1),
    IssueType("10001", "Story"),
    IssueType("10002", "Task"),
    IssueType("10003", "Subtask", -1, True),
    IssueType("10004", "Bug"),
)


@dataclass
class Project:
    id: str
    key: str
    name: str
    next_number: int = 1


@dataclass
class User:
    """An Atlassian account. Only users with a ``token`` can call the API; ``projects`` limits
    what they can browse (``None``: every project)."""

    account_id: str
    email: str
    display_name: str
    time_zone: str | None = None  # None: the site's zone
    token: str | None = None
    scoped: bool = False  # a scoped token works only through the api.atlassian.com gateway
    revoked: bool = False
    projects: frozenset[str] | None = None

    def can_browse(self, project_key: str) -> bool:
        return self.projects is None or project_key in self.projects


@dataclass(frozen=True, slots=True)
class IssueState:
    """One version of an issue's fields. ``assignee``/``reporter`` are account ids."""

    summary: str
    issue_type: str
    status: str
    assignee: str | None
    reporter: str | None
    priority: str
    labels: tuple[str, ...]
    description: str | None
    created_ms: int
    updated_ms: int

    @property
    def created(self) -> datetime:
        return from_ms(self.created_ms)

    @property
    def updated(self) -> datetime:
        return from_ms(self.updated_ms)


@dataclass
class Comment:
    id: str
    author: str  # account id
    body: str
    created_ms: int
    updated_ms: int


@dataclass(eq=False)
class Issue:
    """An issue: identity, its current :attr:`state`, and the versions search sees."""

    id: str
    key: str
    project: str
    number: int
    state: IssueState
    deleted: bool = False
    comments: list[Comment] = field(default_factory=list)
    versions: list[tuple[int, IssueState | None]] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return self.state.summary

    @property
    def issue_type(self) -> str:
        return self.state.issue_type

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def assignee(self) -> str | None:
        """The assignee's account id."""
        return self.state.assignee

    @property
    def created(self) -> datetime:
        return self.state.created

    @property
    def updated(self) -> datetime:
        return self.state.updated

    def indexed(self, now_ms: int) -> IssueState | None:
        """The version search sees at ``now_ms`` (``None``: not indexed yet, or deleted)."""
        for visible_at, state in reversed(self.versions):
            if visible_at <= now_ms:
                return state
        return None

    def row(self) -> dict[str, object]:
        """The issue's current fields, flat, times as UTC datetimes: what a loaded copy should
        hold."""
        s = self.state
        return {
            "id": self.id,
            "key": self.key,
            "project": self.project,
            "summary": s.summary,
            "issue_type": s.issue_type,
            "status": s.status,
            "assignee": s.assignee,
            "created": s.created,
            "updated": s.updated,
        }


class Site:
    """Everything the fake site holds. ``generation`` changes with every write, and together
    with the pending index times it keys the server's cache of search listings."""

    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}
        self.users: dict[str, User] = {}  # by lower-cased email
        self._accounts_by_id: dict[str, User] = {}
        self.issues: dict[int, Issue] = {}  # by numeric id, ascending
        self.by_key: dict[str, Issue] = {}
        self.statuses: dict[str, Status] = {s.name.lower(): s for s in DEFAULT_STATUSES}
        self.issue_types: dict[str, IssueType] = {t.name.lower(): t for t in DEFAULT_ISSUE_TYPES}
        self.generation = 0
        self._pending: list[int] = []  # visible_at of versions written ahead of "now"
        self._next_issue_id = FIRST_ID
        self._next_comment_id = FIRST_ID
        self._accounts = 0

    # ------------------------------------------------------------------ index

    def index_epoch(self, now_ms: int) -> tuple[int, int]:
        """Changes whenever what search sees may have changed (a write, or a lagged write
        becoming visible)."""
        return self.generation, bisect.bisect_right(self._pending, now_ms)

    def _write(self, issue: Issue, state: IssueState | None, now_ms: int, lag_ms: int) -> None:
        visible_at = now_ms + lag_ms
        if visible_at <= now_ms:
            issue.versions.clear()  # visible at once: no older version can be seen again
        issue.versions.append((visible_at, state))
        if lag_ms > 0:
            bisect.insort(self._pending, visible_at)
        self.generation += 1

    # ------------------------------------------------------------------ registries

    def project(self, ref: str) -> Project | None:
        """A project by key (case-insensitive) or id."""
        found = self.projects.get(ref.upper())
        return found or next((p for p in self.projects.values() if p.id == ref), None)

    def add_project(self, key: str, name: str | None) -> Project:
        key = key.upper()
        if key in self.projects:
            raise ValueError(f"project {key} exists")
        project = Project(str(FIRST_ID + len(self.projects)), key, name or f"{key.title()}")
        self.projects[key] = project
        return project

    def status(self, name: str) -> Status:
        found = self.statuses.get(name.lower())
        if found is None:
            category = _CATEGORY.get(name.lower(), "indeterminate")
            found = Status(str(10100 + len(self.statuses)), name, category)
            self.statuses[name.lower()] = found
        return found

    def issue_type(self, name: str) -> IssueType:
        found = self.issue_types.get(name.lower())
        if found is None:
            found = IssueType(str(10100 + len(self.issue_types)), name)
            self.issue_types[name.lower()] = found
        return found

    def user(self, ref: str) -> User | None:
        """A user by email or account id."""
        return self.users.get(ref.lower()) or self._accounts_by_id.get(ref)

    def add_user(self, email: str, **kwargs: object) -> User:
        self._accounts += 1
        account_id = f"{0x5B10AC8D82E05B22CC7D0000 + self._accounts:024x}"
        display = str(kwargs.pop("display_name", None) or email.split("@", maxsplit=1)[0].title())
        user = User(account_id, email, display, **kwargs)  # type: ignore[arg-type]
        self.users[email.lower()] = user
        self._accounts_by_id[account_id] = user
        return user

    def person(self, ref: str | None) -> str | None:
        """The account id for an assignee given as email or account id (new emails become
        users who cannot log in)."""
        if ref is None:
            return None
        return (self.user(ref) or self.add_user(ref)).account_id

    # ------------------------------------------------------------------ issues

    def issue(self, ref: str) -> Issue | None:
        """A live or deleted issue by key (case-insensitive) or id."""
        if ref.isdigit():
            return self.issues.get(int(ref))
        return self.by_key.get(ref.upper())

    def add_issue(self, project: str, state: IssueState, now_ms: int, lag_ms: int) -> Issue:
        proj = self.projects[project.upper()]
        self.status(state.status)
        self.issue_type(state.issue_type)
        number = proj.next_number
        proj.next_number += 1
        issue_id = self._next_issue_id
        self._next_issue_id += 1
        issue = Issue(str(issue_id), f"{proj.key}-{number}", proj.key, number, state)
        self.issues[issue_id] = issue
        self.by_key[issue.key] = issue
        self._write(issue, state, now_ms, lag_ms)
        return issue

    def update_issue(self, issue: Issue, state: IssueState, now_ms: int, lag_ms: int) -> None:
        self.status(state.status)
        self.issue_type(state.issue_type)
        issue.state = state
        self._write(issue, state, now_ms, lag_ms)

    def delete_issue(self, issue: Issue, now_ms: int, lag_ms: int) -> None:
        issue.deleted = True
        self._write(issue, None, now_ms, lag_ms)

    def add_comment(self, issue: Issue, author: str, body: str, at_ms: int) -> Comment:
        comment = Comment(str(self._next_comment_id), author, body, at_ms, at_ms)
        self._next_comment_id += 1
        issue.comments.append(comment)
        self.generation += 1
        return comment

    @staticmethod
    def changed(state: IssueState, **fields: object) -> IssueState:
        return replace(state, **fields)  # type: ignore[arg-type]
