"""The project file's ``type: jira`` connection and its jobs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import BaseModel, Field, field_validator

from highmark.config.connections import ApiConnectionSpec, secret
from highmark.config.jobs import SourceRef
from highmark.connectors.spec import PREFIX_PATTERN, ApiJobSpec, RecordTarget

if TYPE_CHECKING:
    from highmark.destinations.entities import Entity as RecordEntity

PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,254}$")
# ORDER BY anywhere outside a quoted string, whatever the spacing (line breaks included).
_QUOTED = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
# What is asked of every issue: the columns of jira_issues (all of it lands in `raw` too).
DEFAULT_FIELDS = ("summary", "status", "issuetype", "assignee", "project", "created", "updated")
REQUIRED_FIELDS = ("project", "updated")


class JiraConnection(ApiConnectionSpec):
    """Jira Cloud's REST API v3 at a site (``https://acme.atlassian.net``), with an Atlassian
    account's email and API token (HTTP Basic)."""

    type: str = "jira"
    email: str
    token: str = Field(repr=False)

    @field_validator("token")
    @classmethod
    def _secret(cls, value: str) -> str:
        secret(value)
        return value


class JiraSource(SourceRef):
    projects: Annotated[list[str], Field(min_length=1)]
    jql: str | None = None  # ANDed with highmark's own restriction
    fields: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: list(DEFAULT_FIELDS)
    )
    max_results: Annotated[int, Field(ge=1, le=5000)] = 100

    @field_validator("projects")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if not PROJECT_KEY.match(key):
                raise ValueError(
                    f"{key!r} is not a Jira project key (upper-case letters, digits and _, "
                    "starting with a letter, as in PROJ)"
                )
        if len(set(value)) != len(value):
            raise ValueError("lists a project twice")
        return value

    @field_validator("jql")
    @classmethod
    def _no_order(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if _ORDER_BY.search(_QUOTED.sub('""', value)):
            raise ValueError("must not have ORDER BY (highmark orders the search itself)")
        return value.strip()

    @field_validator("fields")
    @classmethod
    def _with_required(cls, value: list[str]) -> list[str]:
        return [*value, *(f for f in REQUIRED_FIELDS if f not in value)]


class JiraTarget(RecordTarget):
    prefix: str = Field(default="jira_", pattern=PREFIX_PATTERN)


class JiraJobSpec(ApiJobSpec):
    """The issues of some projects, optionally narrowed by JQL."""

    kind: ClassVar[str] = "jira"
    mover_path: ClassVar[str] = "highmark.connectors.jira.mover:JiraMover"
    checker_path: ClassVar[str] = "highmark.connectors.jira.check:check"
    mark_column: ClassVar[str] = "updated"

    source: JiraSource
    target: JiraTarget
    lag: timedelta = timedelta(minutes=5)

    def mark_keys(self) -> list[str]:
        return list(self.source.projects)

    def record_entities(self) -> list[RecordEntity]:
        from highmark.connectors.jira.issues import ISSUES

        return [ISSUES]

    def checkpoint_model(self) -> type[BaseModel]:
        from highmark.connectors.jira.checkpoint import JiraCheckpoint

        return JiraCheckpoint
