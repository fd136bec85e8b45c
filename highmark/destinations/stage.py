"""The staging table of a full load (and of a CDC snapshot): a real table, named per job, that
the rows go into batch by batch, committed, so that a killed load resumes where it stopped; the
last step merges it into the target in one transaction and drops it.

The stage has the target's NOT NULL and CHECK constraints (highmark/destinations/stage_ddl.py): a
row they refuse is refused while it is staged, where the staging step bisects it out."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, text
from sqlalchemy.sql.expression import TableClause

from highmark import failpoints
from highmark.destinations.merge import SetMerge
from highmark.destinations.stage_ddl import stage_statements
from highmark.models import Counts
from highmark.sources.base import Batch
from highmark.sources.sql import keyset_after
from highmark.sqlschema import raw_table, reflect
from highmark.sqltypes import write_converter

FULL_STAGE_PREFIX = "hm_stage_"


class FullStage(SetMerge):
    """Staging a full load, resuming it, and replacing the target's content with it."""

    @property
    def full_stage_name(self) -> str:
        # A name of its own per job, kept short for MySQL's 64-character limit.
        return (FULL_STAGE_PREFIX + self.job.job_id.replace(".", "_").replace("-", "_"))[:60]

    def _full_stage(self) -> TableClause:
        return raw_table(self.full_stage_name, self.ref.schema_name, [t for _, t in self._mapping])

    def stage_begin(self, resume_after: tuple[Any, ...] | None) -> bool:
        """Start staging; True when an earlier, interrupted staging continues after
        ``resume_after``. Without its staging table (it was merged and dropped, or never made),
        a full load starts over: merging a partial stage would delete the rest of the target."""
        stage = self._full_stage()
        with self._transaction("cannot read"):
            exists_now = reflect(self.conn, self.ref.schema_name, self.full_stage_name) is not None
        if resume_after is not None and exists_now:
            keys = [stage.c[self._tcol(c)] for c in self.job.primary_key]
            with self._transaction("cannot resume the staging table of"):
                # Rows staged after the last checkpoint are read again.
                self.conn.execute(
                    delete(stage).where(keyset_after(keys, list(self._key_values(resume_after))))
                )
            return True
        quoted = self._quote_qualified(self.ref.schema_name, self.full_stage_name)
        pk_cols = ", ".join(self._quote(self._tcol(c)) for c in self.job.primary_key)
        index_name = self._quote(f"{self.full_stage_name}_pk"[:64])
        with self._transaction("cannot create the staging table of"):
            self.conn.execute(text(f"DROP TABLE IF EXISTS {quoted}"))
        with self._transaction("cannot create the staging table of"):
            statements = stage_statements(
                self.conn, self.dialect, self._quote,
                (self.target.schema, self.target.name),
                (self.ref.schema_name, self.full_stage_name),
                ([t for _, t in self._mapping], [c.name for c in self.target.columns]),
                self._empty_copy_sql(quoted, temporary=False),
            )  # fmt: skip
            for statement in statements:
                if self.dialect == "sqlite":  # the target's own CHECKs and DEFAULTs, verbatim:
                    self.conn.exec_driver_sql(statement)  # no ":name" in them is a parameter
                else:
                    self.conn.execute(text(statement))
        with self._transaction("cannot create the staging table of"):
            on = quoted if self.dialect != "sqlite" else self._quote(self.full_stage_name)
            if self.dialect == "sqlite" and self.ref.schema_name:
                index_name = f"{self._quote(self.ref.schema_name)}.{index_name}"
            self.conn.execute(text(f"CREATE UNIQUE INDEX {index_name} ON {on} ({pk_cols})"))
        return False

    def _key_values(self, key: tuple[Any, ...]) -> list[Any]:
        values = []
        for name, value in zip(self.job.primary_key, key, strict=True):
            tcol = self.target.find(name)
            assert tcol is not None
            convert = write_converter(tcol, self.dialect, self.zone)
            values.append(convert(value) if convert is not None and value is not None else value)
        return values

    def stage_batch(self, batch: Batch) -> int:
        with self._transaction("cannot stage rows for"):
            staged = self._load(self._full_stage(), batch)
            failpoints.reach("mid_batch")
        return staged

    def stage_finish(self) -> Counts:
        stage = self._full_stage()
        with self._transaction("cannot write"):
            counts = self._merge(stage, delete_missing=True)
        with self._transaction("cannot drop the staging table of"):
            stage_name = self._quote_qualified(self.ref.schema_name, self.full_stage_name)
            self.conn.execute(text(f"DROP TABLE IF EXISTS {stage_name}"))
        return counts
