"""What the source checker needs to know about a SQL table beyond its columns: indexes, defaults,
and whether something bumps the watermark column on every UPDATE."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, inspect, text


@dataclass(frozen=True)
class ColumnFacts:
    name: str
    nullable: bool
    default: str | None
    on_update: bool  # MySQL: ON UPDATE CURRENT_TIMESTAMP


@dataclass(frozen=True)
class TableFacts:
    columns: dict[str, ColumnFacts]  # by lower-cased name
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[tuple[str, ...], bool], ...]  # (columns, unique)
    bump_triggers: tuple[str, ...]  # triggers that set a column on UPDATE (names)
    trigger_sources: tuple[str, ...]  # their bodies, lower-cased, to look for a column
    row_count: int

    def column(self, name: str) -> ColumnFacts | None:
        return self.columns.get(name.lower())

    def leads_an_index(self, name: str) -> bool:
        return any(cols and cols[0].lower() == name.lower() for cols, _ in self.indexes) or (
            bool(self.primary_key) and self.primary_key[0].lower() == name.lower()
        )

    def is_unique(self, name: str) -> bool:
        single = (name.lower(),)
        keys = [tuple(c.lower() for c in cols) for cols, unique in self.indexes if unique]
        return tuple(c.lower() for c in self.primary_key) == single or single in keys

    def bumped_by_trigger(self, name: str) -> bool:
        return any(name.lower() in body for body in self.trigger_sources)


def table_facts(connection: Connection, schema: str | None, name: str) -> TableFacts:
    inspector = inspect(connection)
    dialect = connection.dialect.name
    on_update = _mysql_on_update(connection, schema, name) if dialect == "mysql" else set()
    columns = {
        c["name"].lower(): ColumnFacts(
            name=c["name"],
            nullable=bool(c.get("nullable", True)),
            default=None if c.get("default") is None else str(c.get("default")),
            on_update=c["name"].lower() in on_update,
        )
        for c in inspector.get_columns(name, schema=schema)
    }
    pk = tuple(inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or ())
    indexes: list[tuple[tuple[str, ...], bool]] = [
        (tuple(c for c in i["column_names"] if c is not None), bool(i.get("unique")))
        for i in inspector.get_indexes(name, schema=schema)
    ]
    indexes += [
        (tuple(u["column_names"]), True)
        for u in inspector.get_unique_constraints(name, schema=schema)
    ]
    triggers = _update_triggers(connection, dialect, schema, name)
    qualified = f"{schema}.{name}" if schema else name
    quoted = ".".join(connection.dialect.identifier_preparer.quote(p) for p in qualified.split("."))
    count = int(connection.execute(text(f"SELECT count(*) FROM {quoted}")).scalar_one())
    return TableFacts(
        columns=columns,
        primary_key=pk,
        indexes=tuple(indexes),
        bump_triggers=tuple(t for t, _ in triggers),
        trigger_sources=tuple(body.lower() for _, body in triggers),
        row_count=count,
    )


def _mysql_on_update(connection: Connection, schema: str | None, name: str) -> set[str]:
    rows = connection.execute(
        text(
            "SELECT column_name, extra FROM information_schema.columns "
            "WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :name"
        ),
        {"schema": schema, "name": name},
    ).all()
    return {row[0].lower() for row in rows if "on update" in str(row[1]).lower()}


def _update_triggers(
    connection: Connection, dialect: str, schema: str | None, name: str
) -> list[tuple[str, str]]:
    """Row triggers that fire on UPDATE, with the source of what they run."""
    rows: Sequence[Any]
    if dialect == "postgresql":
        rows = connection.execute(
            text(
                """
                SELECT t.tgname, p.prosrc
                  FROM pg_trigger t
                  JOIN pg_class c ON c.oid = t.tgrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                  JOIN pg_proc p ON p.oid = t.tgfoid
                 WHERE c.relname = :name
                   AND n.nspname = COALESCE(:schema, current_schema())
                   AND NOT t.tgisinternal
                   AND (t.tgtype & 16) <> 0   -- fires on UPDATE
                   AND (t.tgtype & 2) <> 0    -- BEFORE: it can change the new row
                """
            ),
            {"name": name, "schema": schema},
        ).all()
    elif dialect == "mysql":
        rows = connection.execute(
            text(
                "SELECT trigger_name, action_statement FROM information_schema.triggers "
                "WHERE event_object_schema = COALESCE(:schema, DATABASE()) "
                "AND event_object_table = :name AND event_manipulation = 'UPDATE' "
                "AND action_timing = 'BEFORE'"
            ),
            {"name": name, "schema": schema},
        ).all()
    else:
        rows = connection.execute(
            text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :name "
                "AND upper(sql) LIKE '%UPDATE%'"
            ),
            {"name": name},
        ).all()
    return [(str(r[0]), str(r[1] or "")) for r in rows]
