"""Compare a source table with its target and decide what to do about each difference.

=============================  =====================================  ==========================
source vs target               ``evolve`` (the default)               ``freeze``
=============================  =====================================  ==========================
a column the target lacks      added to the target, nullable          refused
a target column the source     kept; NULL in new rows (noted once)    refused
lacks
a wider source type            the target column is widened           refused
(same kind)
a type the target cannot hold  refused                                refused
(text into integer)
=============================  =====================================  ==========================

Everything is decided before anything is written: a refusal names every column at fault, the
two types and the fix, and nothing is altered.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from highmark.config.columns import SchemaPolicy
from highmark.errors import SchemaConflictError
from highmark.schema.change import ChangeKind, SchemaChange
from highmark.schema.ddl import Alteration, compile_type
from highmark.schema.types import Fit, adapt, gains_a_zone, judge, words
from highmark.sqlschema import TableSchema
from highmark.sqltypes import describe_type, target_type


@dataclass
class SchemaPlan:
    """What bringing a target up to its source takes."""

    source_table: str
    target_table: str
    policy: SchemaPolicy
    changes: list[SchemaChange] = field(default_factory=list)
    alterations: list[Alteration] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def refuse(self) -> None:
        """Raise the plan's refusal, if it has one (before anything is written)."""
        if not self.problems:
            return
        hint = ""
        if self.policy == "freeze" and any(c.kind is not ChangeKind.DROP for c in self.changes):
            hint = " (schema_changes is freeze; with evolve highmark adds and widens columns)"
        raise SchemaConflictError(
            f"target table {self.target_table} conflicts with source {self.source_table}: "
            f"{'; '.join(self.problems)}{hint}; nothing was written",
            retryable=False,
            conflicts=self.problems,
        )


def plan_changes(
    source: TableSchema,
    target: TableSchema,
    *,
    source_table: str,
    target_table: str,
    primary_key: list[str],
    policy: SchemaPolicy,
    managed: list[str] | None = None,
    target_zone: str = "UTC",
) -> SchemaPlan:
    """Compare ``source`` with ``target`` (on the target's dialect) under ``policy``;
    ``managed`` target columns are highmark's own (a soft-delete mark), never the source's;
    ``target_zone`` is the zone of the target's naive timestamps (its connection's)."""
    dialect = target.dialect
    keys = {k.lower() for k in primary_key}
    plan = SchemaPlan(source_table, target_table, policy)
    frozen = policy == "freeze"
    for col in source.columns:
        in_key = col.name.lower() in keys
        tcol = target.find(col.name)
        if tcol is None:
            new_type = target_type(col, dialect, in_key=False)
            plan.changes.append(
                SchemaChange(source_table, target_table, col.name, ChangeKind.ADD,
                             new_type=compile_type(new_type, dialect))
            )  # fmt: skip
            if frozen or in_key:
                plan.problems.append(f"column {col.name} is missing")
            else:
                plan.alterations.append(Alteration(col.name, new_type, add=True))
            continue
        verdict = judge(col, tcol, dialect, in_key=in_key)
        if verdict.fit is Fit.LOSSY:
            plan.problems.append(
                f"column {tcol.name} is {words(tcol)} in the target but {words(col)} in the "
                f"source: {verdict.reason}; alter {target_table}.{tcol.name} to "
                f"{compile_type(target_type(col, dialect, in_key=in_key), dialect)} yourself, or "
                "drop the target table and run again"
            )
        elif verdict.fit is Fit.WIDEN:
            assert verdict.widened is not None
            new = compile_type(verdict.widened, dialect)
            plan.changes.append(
                SchemaChange(source_table, target_table, tcol.name, ChangeKind.WIDEN,
                             old_type=describe_type(tcol), new_type=new)
            )  # fmt: skip
            if frozen:
                plan.problems.append(
                    f"column {tcol.name} is {describe_type(tcol)} in the target, narrower than "
                    f"{describe_type(col)} in the source"
                )
            else:
                zone = target_zone if gains_a_zone(col, tcol, dialect) else None
                plan.alterations.append(
                    Alteration(tcol.name, verdict.widened, add=False, nullable=tcol.nullable,
                               wall_time_zone=zone)
                )  # fmt: skip
    own = {m.lower() for m in managed or []}
    for tcol in target.columns:
        if source.find(tcol.name) is None and tcol.name.lower() not in own:
            plan.changes.append(
                SchemaChange(source_table, target_table, tcol.name, ChangeKind.DROP,
                             old_type=describe_type(tcol))
            )  # fmt: skip
            if frozen:
                plan.problems.append(
                    f"column {tcol.name} is in the target but not read from the source"
                )
    if not target.has_unique_key(primary_key):
        plan.problems.append(f"it has no primary key or unique index on ({', '.join(primary_key)})")
    return plan


def adapted(source: TableSchema, target: TableSchema) -> TableSchema:
    """``target`` with its columns as highmark writes them for ``source`` (types.adapt)."""
    columns = []
    for tcol in target.columns:
        scol = source.find(tcol.name)
        columns.append(tcol if scol is None else adapt(scol, tcol, target.dialect))
    return replace(target, columns=tuple(columns))
