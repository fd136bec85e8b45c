"""SQL-table jobs: a source table read by a watermark (or whole), a target table upserted."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from highmark.config.common import IDENTIFIER, KeyedError, Strict, parse_duration
from highmark.config.jobs import JobSpec, MarkSpec, SourceRef, TargetRef
from highmark.models import LoadType, WatermarkType

if TYPE_CHECKING:
    from pydantic import BaseModel

DEFAULT_BATCH_SIZE = 10_000
MAX_PARALLELISM = 16


class TableRef(SourceRef, TargetRef):
    """A table on a named connection; ``schema.table`` names are allowed."""

    table: str

    @field_validator("table")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2 or not all(part and IDENTIFIER.match(part) for part in parts):
            raise ValueError(f"{value!r} is not a table name (use table or schema.table)")
        return value

    @property
    def schema_name(self) -> str | None:
        return self.table.split(".")[0] if "." in self.table else None

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]


class WatermarkSpec(Strict):
    column: str
    type: WatermarkType = WatermarkType.TIMESTAMP
    tiebreaker: str | None = None
    lag: timedelta = timedelta(0)
    on_null: Literal["error", "skip", "include"] = "error"
    # What to do when the source role cannot see other sessions' transactions (the upper bound is
    # then blind to late commits): refuse to run unless `lag` is set, or allow it knowingly.
    blind_bound: Literal["refuse", "allow"] = "refuse"

    @field_validator("lag", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        return parse_duration(value)

    @model_validator(mode="after")
    def _coherent(self) -> WatermarkSpec:
        if self.type is WatermarkType.INTEGER and self.tiebreaker:
            raise KeyedError(
                ("tiebreaker",), "an integer watermark takes no tiebreaker (the column is the key)"
            )
        if self.type is WatermarkType.INTEGER and self.lag:
            raise KeyedError(("lag",), "lag applies to timestamp watermarks only")
        return self


class SoftDeleteSpec(Strict):
    column: str
    mode: Literal["mark", "delete"] = "mark"


class TableJobSpec(JobSpec):
    """A job that loads one source table into one target table."""

    kind: ClassVar[str] = "sql"
    mover_path: ClassVar[str] = "highmark.movers.table:TableMover"
    checker_path: ClassVar[str] = "highmark.checker:check_job"

    source: TableRef
    target: TableRef
    primary_key: Annotated[list[str], Field(min_length=1)]
    watermark: WatermarkSpec | None = None
    soft_delete: SoftDeleteSpec | None = None
    batch_size: Annotated[int, Field(gt=0, le=1_000_000)] = DEFAULT_BATCH_SIZE
    # Ranges of a first load that are loaded at once (highmark/parallel.py says where it applies).
    parallelism: Annotated[int, Field(ge=1, le=MAX_PARALLELISM)] = 1

    @field_validator("primary_key", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _coherent(self) -> TableJobSpec:
        if self.load_type is LoadType.INCREMENTAL and self.watermark is None:
            raise KeyedError(
                ("watermark",), "an incremental job needs a watermark: {column: …, type: …}"
            )
        if len(set(self.primary_key)) != len(self.primary_key):
            raise KeyedError(("primary_key",), "lists a column twice")
        return self

    @property
    def source_label(self) -> str:
        return self.source.table

    @property
    def target_label(self) -> str:
        return self.target.table

    def marks(self) -> list[MarkSpec]:
        if self.watermark is None:
            return []
        spec = self.watermark
        return [MarkSpec(self.source.table, spec.column, spec.type, bool(spec.tiebreaker))]

    def checkpoint_model(self) -> type[BaseModel]:
        from highmark.checkpoint import RunCheckpoint

        return RunCheckpoint
