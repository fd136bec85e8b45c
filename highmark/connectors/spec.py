"""What every API job shares in the project file: a target of one table per entity, marks per
source key (repository, project…), and the lag a mark keeps behind the service's clock."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from highmark.config.common import duration_field
from highmark.config.jobs import JobSpec, MarkSpec, TargetRef
from highmark.config.tables import DEFAULT_ON_BAD_ROWS, OnBadRows
from highmark.models import WatermarkType

if TYPE_CHECKING:
    from highmark.config import ProjectConfig
    from highmark.destinations.entities import Entity
    from highmark.destinations.records import RecordWriter

PREFIX_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,39}$"


class RecordTarget(TargetRef):
    """Where an API job's entities land: tables ``<prefix><entity>`` on a database connection."""

    prefix: str = Field(pattern=PREFIX_PATTERN)


class ApiJobSpec(JobSpec):
    """An API job: entities read from a web API, one target table each, a mark per key."""

    mark_column: ClassVar[str] = "updated_at"

    target: RecordTarget
    # The mark never gets closer than this to the service's own clock: each run re-reads what
    # changed in the last `lag`, which covers the service's indexing delay and clock skew (the
    # upsert makes the re-read harmless).
    lag: timedelta = timedelta(minutes=5)
    # Records the target refuses (highmark/destinations/record_bisect.py): fail the run naming
    # them, or quarantine them in etl_rejected_rows; the top-level `on_bad_rows` is the default.
    on_bad_rows: OnBadRows = DEFAULT_ON_BAD_ROWS

    @field_validator("lag", mode="before")
    @classmethod
    def _lag(cls, value: Any) -> timedelta:
        return duration_field(value)

    def mark_keys(self) -> list[str]:
        """The ``source_table`` of each mark (a repository, a project…)."""
        raise NotImplementedError

    def record_entities(self) -> list[Entity]:
        """The entities the job writes, one target table each."""
        raise NotImplementedError

    @property
    def delete_mode(self) -> Literal["mark", "delete"]:
        return "delete"

    def record_writer(self, config: ProjectConfig) -> RecordWriter:
        """The writer of the job's tables (its mover's, and ``rejected retry``'s)."""
        from highmark.destinations.records import RecordWriter

        return RecordWriter(
            config.resolve(self.target.connection),
            self.target.prefix,
            self.record_entities(),
            deletes=self.delete_mode,
            schema_changes=self.schema_changes,
        )

    def marks(self) -> list[MarkSpec]:
        return [
            MarkSpec(key, self.mark_column, WatermarkType.TIMESTAMP) for key in self.mark_keys()
        ]

    @property
    def source_label(self) -> str:
        return ", ".join(self.mark_keys())

    @property
    def target_label(self) -> str:
        return f"{self.target.prefix}*"
