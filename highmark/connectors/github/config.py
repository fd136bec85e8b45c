"""The project file's ``type: github`` connection and its jobs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from highmark.config.connections import ApiConnectionSpec, secret
from highmark.config.jobs import SourceRef
from highmark.connectors.spec import ApiJobSpec, RecordTarget

if TYPE_CHECKING:
    from highmark.destinations.entities import Entity as RecordEntity

DEFAULT_URL = "https://api.github.com/graphql"
Entity = Literal["pull_requests", "commits", "reviews", "comments"]


def _all_entities() -> list[Entity]:
    return ["pull_requests", "commits", "reviews", "comments"]


REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")


class GitHubConnection(ApiConnectionSpec):
    """GitHub's GraphQL API (``url``: GitHub Enterprise's ``https://HOST/api/graphql``, or a
    test server) with a personal access, GitHub App installation or OAuth token."""

    type: str = "github"
    url: str = DEFAULT_URL
    token: str = Field(repr=False)

    @field_validator("token")
    @classmethod
    def _secret(cls, value: str) -> str:
        secret(value)
        if not value.strip():
            raise ValueError("is empty")
        return value


class GitHubSource(SourceRef):
    repositories: Annotated[list[str], Field(min_length=1)]
    entities: Annotated[list[Entity], Field(min_length=1)] = Field(default_factory=_all_entities)
    page_size: Annotated[int, Field(ge=1, le=100)] = 50  # pull requests per request
    nested_page_size: Annotated[int, Field(ge=1, le=100)] = 100  # commits… per pull request

    @field_validator("repositories")
    @classmethod
    def _repositories(cls, value: list[str]) -> list[str]:
        for name in value:
            if not REPOSITORY.match(name):
                raise ValueError(f"{name!r} is not a repository as owner/name (acme/api)")
        if len({name.lower() for name in value}) != len(value):  # GitHub ignores case
            raise ValueError("lists a repository twice")
        return value

    @field_validator("entities")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists an entity twice")
        return value


class GitHubTarget(RecordTarget):
    prefix: str = Field(default="github_", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


class GitHubJobSpec(ApiJobSpec):
    """Pull requests of some repositories, with their commits, reviews and comments."""

    kind: ClassVar[str] = "github"
    mover_path: ClassVar[str] = "highmark.connectors.github.mover:GitHubMover"
    checker_path: ClassVar[str] = "highmark.connectors.github.check:check"

    source: GitHubSource
    target: GitHubTarget
    lag: timedelta = timedelta(minutes=1)

    def mark_keys(self) -> list[str]:
        return list(self.source.repositories)

    def record_entities(self) -> list[RecordEntity]:
        from highmark.connectors.github.entities import entities

        return entities(self.source.entities)

    def checkpoint_model(self) -> type[BaseModel]:
        from highmark.connectors.github.checkpoint import GitHubCheckpoint

        return GitHubCheckpoint
