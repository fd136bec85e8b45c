"""``etl_schema_changes``: what runs did to their target tables' columns (its SQL lives here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from highmark.models import _jsonable
from highmark.schema.change import ChangeKind, SchemaChange
from highmark.store.store import ControlStore
from highmark.store.tables import etl_schema_changes


@dataclass(frozen=True)
class SchemaChangeRecord:
    """A row of ``etl_schema_changes``."""

    change_id: int
    job_id: str
    run_id: int | None
    source_table: str
    target_table: str
    column_name: str
    change_kind: str
    old_type: str | None
    new_type: str | None
    applied_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> SchemaChangeRecord:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        return {f: _jsonable(getattr(self, f)) for f in self.__dataclass_fields__}

    def change(self) -> SchemaChange:
        return SchemaChange(
            self.source_table, self.target_table, self.column_name,
            ChangeKind(self.change_kind), self.old_type, self.new_type,
        )  # fmt: skip


class SchemaHistory:
    """Writing and reading ``etl_schema_changes``."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store

    def record(self, job_id: str, run_id: int | None, change: SchemaChange) -> bool:
        """Keep ``change``; False (and nothing kept) for a drop already kept: a column the
        source no longer has is found again by every run, and recorded once."""
        t = etl_schema_changes
        with self.store._begin("cannot record a schema change") as connection:
            if change.kind is ChangeKind.DROP:
                last = connection.execute(
                    select(t.c.change_kind)
                    .where(
                        t.c.job_id == job_id,
                        t.c.target_table == change.target_table,
                        t.c.column_name == change.column,
                    )
                    .order_by(t.c.change_id.desc())
                    .limit(1)
                ).scalar()
                if last == ChangeKind.DROP.value:
                    return False
            connection.execute(
                insert(t).values(
                    job_id=job_id,
                    run_id=run_id,
                    source_table=change.source_table[:255],
                    target_table=change.target_table[:255],
                    column_name=change.column[:255],
                    change_kind=change.kind.value,
                    old_type=None if change.old_type is None else change.old_type[:255],
                    new_type=None if change.new_type is None else change.new_type[:255],
                    applied_at=self.store._now(connection),
                )
            )
        return True

    def list(
        self, job_id: str | None = None, *, run_id: int | None = None, limit: int | None = None
    ) -> list[SchemaChangeRecord]:
        """Changes, oldest first (the last ``limit`` of them)."""
        t = etl_schema_changes
        query = select(t).order_by(t.c.change_id.desc())
        if job_id is not None:
            query = query.where(t.c.job_id == job_id)
        if run_id is not None:
            query = query.where(t.c.run_id == run_id)
        if limit is not None:
            query = query.limit(limit)
        with self.store._begin("cannot read the schema changes") as connection:
            rows = [SchemaChangeRecord.from_row(row) for row in connection.execute(query)]
        return rows[::-1]
