"""What a parsed JQL query means on this site, for this user, now: which issues match and in what
order.

:func:`resolve` checks fields, operators and values against the site (an unknown or invisible
project is a 400, as in Jira), turns date literals into instants, and yields a :class:`Criteria`
whose :attr:`Criteria.plan` is a hashable tree (the server caches listings by it).

**Minute precision.** JQL dates have no seconds, and the fake compares at the minute
(``precision="minute"``, the default): ``updated >= "10:15"`` matches 10:15:00.000 onward, and
``updated > "10:15"`` only 10:16:00.000 onward, so a connector that pages with ``>`` on a
minute-floored watermark loses the rest of that minute. ``precision="instant"`` compares the
literal's instant to the millisecond instead (Jira's docs do not settle which one it does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import total_ordering
from typing import Any

from .dates import MINUTE_MS, literal_ms
from .jql import And, Clause, JqlError, Node, Not, Or, Query, Value
from .model import Issue, IssueState, Site, User, from_ms

FIELDS = {
    "project": "project",
    "issuetype": "issuetype",
    "type": "issuetype",
    "status": "status",
    "key": "key",
    "issuekey": "key",
    "id": "key",
    "assignee": "assignee",
    "updated": "updated",
    "updateddate": "updated",
    "created": "created",
    "createddate": "created",
}
_LIST_OPS = {"=", "!=", "in", "not in"}
OPERATORS = {
    "project": _LIST_OPS,
    "issuetype": _LIST_OPS,
    "status": _LIST_OPS,
    "key": _LIST_OPS,
    "assignee": _LIST_OPS | {"is", "is not"},
    "updated": {"=", "!=", ">", ">=", "<", "<="},
    "created": {"=", "!=", ">", ">=", "<", "<="},
}
SORTABLE = {"updated", "created", "key", "issuekey", "id", "project", "status", "issuetype"}
DEFAULT_ORDER = (("created", True),)  # [unconfirmed] what Jira uses without ORDER BY

Plan = tuple[Any, ...]
Predicate = Callable[[Issue, IssueState], bool]


@dataclass(frozen=True)
class Context:
    """Who searches, in which zone, when."""

    site: Site
    user: User
    user_zone: str
    now_ms: int
    precision: str = "minute"  # or "instant"


@dataclass(frozen=True)
class DateCondition:
    """A date clause as understood: ``instant`` is the literal's UTC instant (before flooring)."""

    field: str
    op: str
    literal: str
    instant: datetime


@dataclass(frozen=True)
class Criteria:
    plan: Plan | None  # None: unbounded
    order: tuple[tuple[str, bool], ...]  # (field, descending), ending with a unique field
    dates: tuple[DateCondition, ...]

    @property
    def bounded(self) -> bool:
        return self.plan is not None

    def date(self, field: str, op: str) -> datetime | None:
        """The instant of the first ``field op "…"`` clause, e.g. ``date("updated", ">=")``."""
        return next((d.instant for d in self.dates if d.field == field and d.op == op), None)


def resolve(query: Query, ctx: Context) -> Criteria:
    """Give ``query`` its meaning, or raise :class:`JqlError`."""
    dates: list[DateCondition] = []
    plan = _node(query.where, ctx, dates) if query.where is not None else None
    order: list[tuple[str, bool]] = []
    for key in query.order_by:
        name = key.field.lower()
        if name not in SORTABLE:
            raise JqlError(
                f"Field '{key.field}' does not exist or you do not have permission to view it."
            )
        order.append((FIELDS.get(name, name) if name != "id" else "id", key.descending))
    if not order:
        order = list(DEFAULT_ORDER)
    if not any(f in ("key", "id") for f, _ in order):
        order.append(("id", order[-1][1]))
    return Criteria(plan, tuple(order), tuple(dates))


def _node(node: Node, ctx: Context, dates: list[DateCondition]) -> Plan:
    if isinstance(node, And):
        return ("and", tuple(_node(n, ctx, dates) for n in node.items))
    if isinstance(node, Or):
        return ("or", tuple(_node(n, ctx, dates) for n in node.items))
    if isinstance(node, Not):
        return ("not", _node(node.item, ctx, dates))
    return _clause(node, ctx, dates)


def _clause(clause: Clause, ctx: Context, dates: list[DateCondition]) -> Plan:
    field = FIELDS.get(clause.field.lower())
    if field is None:
        raise JqlError(
            f"Field '{clause.field}' does not exist or you do not have permission to view it."
        )
    if clause.op not in OPERATORS[field]:
        raise JqlError(f"The operator '{clause.op}' is not supported by the '{field}' field.")
    if field in ("updated", "created"):
        return _date_clause(field, clause, ctx, dates)
    values = frozenset(_value(field, v, ctx) for v in clause.values)
    return ("in", field, values, clause.op in ("!=", "not in", "is not"))


def _value(field: str, value: Value, ctx: Context) -> Any:
    site, text = ctx.site, value.text
    if value.is_function:
        if field == "assignee" and text.lower() == "currentuser":
            return ctx.user.account_id
        raise JqlError(f"Unable to find JQL function '{text}()'.")
    missing = JqlError(f"The value '{text}' does not exist for the field '{field}'.")
    if field == "project":
        project = site.project(text) or next(
            (p for p in site.projects.values() if p.name.lower() == text.lower()), None
        )
        if project is None or not ctx.user.can_browse(project.key):
            raise missing
        return project.key
    if field in ("issuetype", "status"):
        registry = site.issue_types if field == "issuetype" else site.statuses
        for name, entry in registry.items():
            if text.lower() == name or text == entry.id:
                return name
        raise missing
    if field == "key":
        issue = site.issue(text)
        if issue is None or issue.deleted or not ctx.user.can_browse(issue.project):
            raise JqlError(f"An issue with key '{text}' does not exist for field 'key'.")
        return issue.id
    if text.upper() in ("EMPTY", "NULL") and not value.quoted:
        return None
    user = site.user(text)
    if user is None:
        raise missing
    return user.account_id


def _date_clause(field: str, clause: Clause, ctx: Context, dates: list[DateCondition]) -> Plan:
    value = clause.values[0]
    if value.is_function:
        if value.text.lower() != "now":
            raise JqlError(f"Unable to find JQL function '{value.text}()'.")
        ms = ctx.now_ms
    else:
        ms = literal_ms(
            value.text,
            quoted=value.quoted,
            field=clause.field,
            user_zone=ctx.user_zone,
            now_ms=ctx.now_ms,
        )
    dates.append(DateCondition(field, clause.op, value.text, from_ms(ms)))
    unit = MINUTE_MS if ctx.precision == "minute" else 1
    start = ms - ms % unit  # floor to the unit
    low, high = {
        ">=": (start, None),
        ">": (start + unit, None),
        "<=": (None, start + unit),
        "<": (None, start),
        "=": (start, start + unit),
        "!=": (start, start + unit),
    }[clause.op]
    return ("range", field, low, high, clause.op == "!=")


def predicate(plan: Plan) -> Predicate:
    """A function telling whether an issue (in a given indexed state) matches ``plan``."""
    kind = plan[0]
    if kind in ("and", "or"):
        parts = [predicate(p) for p in plan[1]]
        if kind == "and":
            return lambda issue, state: all(p(issue, state) for p in parts)
        return lambda issue, state: any(p(issue, state) for p in parts)
    if kind == "not":
        inner = predicate(plan[1])
        return lambda issue, state: not inner(issue, state)
    if kind == "range":
        _, field, low, high, negate = plan
        attr = "updated_ms" if field == "updated" else "created_ms"

        def in_range(issue: Issue, state: IssueState) -> bool:
            ms: int = getattr(state, attr)
            inside = (low is None or ms >= low) and (high is None or ms < high)
            return bool(inside != negate)

        return in_range
    _, field, values, negate = plan
    get = _GETTERS[field]
    return lambda issue, state: (get(issue, state) in values) != negate


_GETTERS: dict[str, Callable[[Issue, IssueState], Any]] = {
    "project": lambda issue, state: issue.project,
    "issuetype": lambda issue, state: state.issue_type.lower(),
    "status": lambda issue, state: state.status.lower(),
    "key": lambda issue, state: issue.id,
    "assignee": lambda issue, state: state.assignee,
}
_SORT_VALUES: dict[str, Callable[[Issue, IssueState], Any]] = {
    "updated": lambda issue, state: state.updated_ms,
    "created": lambda issue, state: state.created_ms,
    "key": lambda issue, state: (issue.project, issue.number),  # FOO-9 before FOO-10
    "id": lambda issue, state: int(issue.id),
    "project": lambda issue, state: issue.project,
    "status": lambda issue, state: state.status.lower(),
    "issuetype": lambda issue, state: state.issue_type.lower(),
}


@total_ordering
class Descending:
    """Wraps a sort value so that ascending tuple order sorts it descending."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Descending) and self.value == other.value

    def __lt__(self, other: Descending) -> bool:
        return bool(other.value < self.value)

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Descending({self.value!r})"


def sort_key(order: tuple[tuple[str, bool], ...]) -> Callable[[Issue, IssueState], tuple[Any, ...]]:
    """A key function ordering issues as ``ORDER BY`` says (a total order: it ends with a unique
    field)."""
    getters = [(_SORT_VALUES[field], desc) for field, desc in order]

    def key(issue: Issue, state: IssueState) -> tuple[Any, ...]:
        return tuple(
            Descending(g(issue, state)) if desc else g(issue, state) for g, desc in getters
        )

    return key
