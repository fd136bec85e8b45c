"""The project file's ``type: msgraph`` connection and its jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from highmark.config.jobs import SourceRef
from highmark.connectors.microsoft import MicrosoftConnection
from highmark.connectors.rounds import RoundJobSpec
from highmark.connectors.spec import PREFIX_PATTERN, RecordTarget

if TYPE_CHECKING:
    from highmark.destinations.entities import Entity as RecordEntity

DEFAULT_URL = "https://graph.microsoft.com/v1.0"
Entity = Literal["users", "groups", "group_members"]
PROPERTY_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,99}$"


def _all_entities() -> list[Entity]:
    return ["users", "groups", "group_members"]


class MsGraphConnection(MicrosoftConnection):
    """Microsoft Graph (``url``: a national cloud's ``https://graph.microsoft.us/v1.0``, or a
    test server), for an Entra ID app with ``User.Read.All`` and ``Group.Read.All`` (or
    ``Directory.Read.All``) application permissions."""

    type: str = "msgraph"
    url: str = DEFAULT_URL


class MsGraphSource(SourceRef):
    entities: Annotated[list[Entity], Field(min_length=1)] = Field(default_factory=_all_entities)
    # Properties tracked besides highmark's own (they land in `raw`): a change to a property
    # that is not selected does not bring the object back in a delta round.
    user_properties: list[Annotated[str, Field(pattern=PROPERTY_PATTERN)]] = Field(
        default_factory=list
    )
    group_properties: list[Annotated[str, Field(pattern=PROPERTY_PATTERN)]] = Field(
        default_factory=list
    )

    @field_validator("entities", "user_properties", "group_properties")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists an item twice")
        return value

    def rounds(self) -> list[str]:
        """The delta queries a run makes: ``users``, and ``groups`` for groups or members."""
        chosen = ["users"] if "users" in self.entities else []
        if "groups" in self.entities or "group_members" in self.entities:
            chosen.append("groups")
        return chosen


class MsGraphTarget(RecordTarget):
    prefix: str = Field(default="msgraph_", pattern=PREFIX_PATTERN)


class MsGraphJobSpec(RoundJobSpec):
    """Entra ID users, groups and group memberships by Graph delta queries."""

    kind: ClassVar[str] = "msgraph"
    mover_path: ClassVar[str] = "highmark.connectors.msgraph.mover:MsGraphMover"
    checker_path: ClassVar[str] = "highmark.connectors.msgraph.check:check"

    source: MsGraphSource
    target: MsGraphTarget

    def mark_keys(self) -> list[str]:
        return self.source.rounds()

    def record_entities(self) -> list[RecordEntity]:
        from highmark.connectors.msgraph.entities import ENTITIES

        return [ENTITIES[e] for e in self.source.entities]

    def checkpoint_model(self) -> type[BaseModel]:
        from highmark.connectors.msgraph.checkpoint import MsGraphCheckpoint

        return MsGraphCheckpoint
