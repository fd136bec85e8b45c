"""The project file's ``type: fabric`` connection and its jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import BaseModel, Field, field_validator

from highmark.config.jobs import SourceRef
from highmark.connectors.microsoft import MicrosoftConnection
from highmark.connectors.rounds import RoundJobSpec
from highmark.connectors.spec import PREFIX_PATTERN, RecordTarget

if TYPE_CHECKING:
    from highmark.destinations.entities import Entity as RecordEntity

DEFAULT_URL = "https://api.fabric.microsoft.com/v1"
WORKSPACE_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
ITEM_TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9]{0,99}$"


class FabricConnection(MicrosoftConnection):
    """Microsoft Fabric's REST API (``url``: a test server, or another cloud's endpoint), for a
    service principal the tenant setting "Service principals can use Fabric APIs" lets in, with a
    role in each workspace it should see."""

    type: str = "fabric"
    url: str = DEFAULT_URL


class FabricSource(SourceRef):
    # Workspace ids (default: every workspace the principal can see).
    workspaces: list[Annotated[str, Field(pattern=WORKSPACE_PATTERN)]] | None = None
    # Item types (default: all; semantic models, the reference's "datasets", are SemanticModel).
    item_types: list[Annotated[str, Field(pattern=ITEM_TYPE_PATTERN)]] | None = None

    @field_validator("workspaces", "item_types")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("is empty (leave it out for all)")
            if len({v.lower() for v in value}) != len(value):
                raise ValueError("lists an item twice")
        return value


class FabricTarget(RecordTarget):
    prefix: str = Field(default="fabric_", pattern=PREFIX_PATTERN)


class FabricJobSpec(RoundJobSpec):
    """Fabric workspaces and their items, a whole listing per run, diffed against the target."""

    kind: ClassVar[str] = "fabric"
    mover_path: ClassVar[str] = "highmark.connectors.fabric.mover:FabricMover"
    checker_path: ClassVar[str] = "highmark.connectors.fabric.check:check"

    source: FabricSource
    target: FabricTarget

    def mark_keys(self) -> list[str]:
        return ["workspaces"]

    def record_entities(self) -> list[RecordEntity]:
        from highmark.connectors.fabric.entities import ITEMS, WORKSPACES

        return [WORKSPACES, ITEMS]

    def checkpoint_model(self) -> type[BaseModel]:
        from highmark.connectors.fabric.checkpoint import FabricCheckpoint

        return FabricCheckpoint
