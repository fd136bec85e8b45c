"""What every job of the project file has, whatever it loads: identity, schedule, timeouts,
retries, freshness. Each kind of job (highmark/kinds.py) extends :class:`JobSpec` with its source
and target, and names the mover that moves its data."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from highmark.config.columns import DEFAULT_SCHEMA_POLICY, SchemaPolicy
from highmark.config.common import Strict, check_zone, duration_field
from highmark.models import LoadType, WatermarkType

if TYPE_CHECKING:
    from highmark.config.project import ProjectConfig
    from highmark.movers.base import Mover

DEFAULT_TIMEOUT_SECONDS = 3600
DEFAULT_RETRY_COUNT = 3
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class SourceRef(Strict):
    """Where a job reads: a named connection (each kind adds what it reads there)."""

    connection: str


class TargetRef(Strict):
    """Where a job writes: a named database connection (each kind adds where in it)."""

    connection: str


class RetryBackoff(Strict):
    """Exponential backoff between retries of a failed scheduled run (with jitter)."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=30)

    @field_validator("base", "cap", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> timedelta:
        return duration_field(value)


@dataclass(frozen=True)
class MarkSpec:
    """One ``etl_watermarks`` row a job keeps: its ``source_table``, column and type."""

    source_table: str
    column: str
    type: WatermarkType
    tiebreaker: bool = False  # a timestamp mark that also keeps the tiebreaker of its last row


class JobSpec(Strict):
    """One job of the project file, validated: what every kind of job shares."""

    # The kind's registry name, the mover that moves its data and the checker of its source
    # ("module:attribute", imported only when a run or a check needs them).
    kind: ClassVar[str] = "sql"
    mover_path: ClassVar[str] = ""
    checker_path: ClassVar[str] = ""

    job_id: Annotated[str, Field(pattern=JOB_ID_PATTERN)]
    name: str | None = None
    description: str | None = None
    load_type: LoadType
    source: SourceRef
    target: TargetRef
    schedule: str | None = None
    schedule_timezone: str | None = None
    timeout_seconds: Annotated[int, Field(gt=0)] = DEFAULT_TIMEOUT_SECONDS
    retry_count: Annotated[int, Field(ge=0, le=100)] = DEFAULT_RETRY_COUNT
    retry_backoff: RetryBackoff = Field(default_factory=RetryBackoff)
    is_active: bool = True
    # How old the last success may get before the job counts as stale (alerts, metrics).
    freshness: timedelta | None = None
    # What a run does when the source's columns differ from the target's (highmark/schema/).
    schema_changes: SchemaPolicy = DEFAULT_SCHEMA_POLICY

    @field_validator("freshness", mode="before")
    @classmethod
    def _freshness(cls, value: Any) -> timedelta | None:
        return None if value is None else duration_field(value)

    @field_validator("load_type")
    @classmethod
    def _supported(cls, value: LoadType) -> LoadType:
        if value is LoadType.CDC:
            raise ValueError("'cdc' is not supported yet (use full or incremental)")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression")
        return value

    @field_validator("schedule_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @property
    def job_name(self) -> str:
        return self.name or self.job_id

    # ------------------------------------------------------------------ what each kind says

    @property
    def source_label(self) -> str:
        """What it reads, for ``etl_jobs.source_table`` and messages."""
        raise NotImplementedError

    @property
    def target_label(self) -> str:
        """Where it writes, for ``etl_jobs.target_table`` and messages."""
        raise NotImplementedError

    def marks(self) -> list[MarkSpec]:
        """The ``etl_watermarks`` rows this job keeps (none: it has no mark)."""
        return []

    def checkpoint_model(self) -> type[BaseModel]:
        """The model that validates this job's ``checkpoint_data`` (whole or edited)."""
        raise NotImplementedError

    def mover_target(self) -> str:
        """``module:attribute`` of the factory of this job's mover (by default, its kind's)."""
        return self.mover_path

    def mover(self, config: ProjectConfig) -> Mover:
        """The mover that runs this job (imported now, not when the file is read)."""
        factory: Any = _load(self.mover_target())
        mover: Mover = factory(config, self)
        return mover

    def preload(self) -> None:
        """Import this job's mover now: a worker does, once, before it forks runs, so that each
        run does not import it again."""
        _load(self.mover_target())

    def check_source(self, config: ProjectConfig) -> list[Any]:
        """``highmark check``: findings about the job's source (checker.Finding)."""
        checker: Any = _load(self.checker_path)
        findings: list[Any] = checker(config, self)
        return findings


def _load(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
