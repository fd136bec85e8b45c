"""SQL-table jobs: a source table read by a watermark (or whole), a target table upserted."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from highmark.config.cdc import CdcSpec, ReconcileSettings, default_log_name
from highmark.config.columns import ColumnChoice
from highmark.config.common import IDENTIFIER, KeyedError, Strict, parse_duration
from highmark.config.jobs import JobSpec, MarkSpec, SourceRef, TargetRef
from highmark.models import LoadType, WatermarkType

if TYPE_CHECKING:
    from pydantic import BaseModel

    from highmark.config.project import ProjectConfig

# What a CDC job keeps in etl_watermarks: its position in the source's log.
CDC_MARK_COLUMN = "log_position"

# What a run does with rows the target refuses for their values (highmark/bad_rows.py).
OnBadRows = Literal["fail", "quarantine"]
DEFAULT_ON_BAD_ROWS: OnBadRows = "fail"
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
        if self.type is WatermarkType.LOG_POSITION:
            raise KeyedError(("type",), "use timestamp or integer (log positions are for cdc jobs)")
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


class TableJobSpec(ColumnChoice, JobSpec):
    """A job that loads one source table into one target table (the columns it loads and masks:
    highmark/config/columns.py)."""

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
    # load_type cdc: the log it reads (highmark/movers/cdc.py).
    cdc: CdcSpec | None = None
    # `highmark reconcile` on a schedule, under the worker (highmark/reconcile/).
    reconcile: ReconcileSettings | None = None
    # Bad rows (of every load type, cdc included): fail the run (naming them) or quarantine
    # them; the project file's top-level `on_bad_rows` is the default.
    on_bad_rows: OnBadRows = DEFAULT_ON_BAD_ROWS

    @field_validator("load_type")
    @classmethod
    def _supported(cls, value: LoadType) -> LoadType:
        return value  # SQL tables take every load type, cdc included

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
        if self.load_type is LoadType.CDC and self.watermark is not None:
            raise KeyedError(
                ("watermark",), "a cdc job reads the source's log, not a watermark column"
            )
        if self.cdc is not None and self.load_type is not LoadType.CDC:
            raise KeyedError(("cdc",), "applies to load_type: cdc only")
        self.check_choice(self.needed_columns())
        return self

    def needed_columns(self) -> dict[str, str]:
        """The columns this job cannot work without, and what each is to it."""
        needed = {c: "the primary key" for c in self.primary_key}
        if self.watermark is not None:
            needed.setdefault(self.watermark.column, "the watermark column")
            if self.watermark.tiebreaker:
                needed.setdefault(self.watermark.tiebreaker, "the watermark's tiebreaker")
        if self.soft_delete is not None and not self._marks_in_target:
            needed.setdefault(self.soft_delete.column, "the soft-delete column")
        return needed

    @property
    def _marks_in_target(self) -> bool:
        """A cdc job's ``soft_delete: {mode: mark}`` column is the target's own when the source
        lacks it (or leaves it out): it need not be read."""
        return (
            self.load_type is LoadType.CDC
            and self.soft_delete is not None
            and self.soft_delete.mode == "mark"
        )

    @property
    def cdc_settings(self) -> CdcSpec:
        return self.cdc or CdcSpec()

    @property
    def slot_name(self) -> str:
        """The PostgreSQL replication slot of a CDC job."""
        return self.cdc_settings.slot or default_log_name(self.job_id)

    @property
    def publication_name(self) -> str:
        return self.cdc_settings.publication or self.slot_name

    def mover_target(self) -> str:
        if self.load_type is LoadType.CDC:
            return "highmark.movers.cdc:CdcMover"
        return self.mover_path

    def check_source(self, config: ProjectConfig) -> list[Any]:
        if self.load_type is LoadType.CDC:
            from highmark.checker_cdc import check_cdc

            return list(check_cdc(config, self))
        return super().check_source(config)

    @property
    def source_label(self) -> str:
        return self.source.table

    @property
    def target_label(self) -> str:
        return self.target.table

    def marks(self) -> list[MarkSpec]:
        if self.load_type is LoadType.CDC:
            return [MarkSpec(self.source.table, CDC_MARK_COLUMN, WatermarkType.LOG_POSITION)]
        if self.watermark is None:
            return []
        spec = self.watermark
        return [MarkSpec(self.source.table, spec.column, spec.type, bool(spec.tiebreaker))]

    def checkpoint_model(self) -> type[BaseModel]:
        if self.load_type is LoadType.CDC:
            from highmark.movers.cdc_checkpoint import CdcCheckpoint

            return CdcCheckpoint
        from highmark.checkpoint import RunCheckpoint

        return RunCheckpoint
