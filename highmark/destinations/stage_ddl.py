"""The statements that create a full load's staging table, per database.

The stage has the target's mapped columns with their types, and what makes the target refuse a
row by its own values: NOT NULL and CHECK constraints. A row the target would refuse is then
refused as it is staged, where the staging step bisects it out and names it (on_bad_rows), not by
the final merge, which would fail the whole load. Keys (the stage gets a unique index on the
job's key of its own), other unique indexes, foreign keys, identity and generated columns are not
carried: those the final merge meets. Column defaults never apply in the stage (every staged row
gives every column) and are copied only where the database copies them with the rest.

- PostgreSQL: ``LIKE target INCLUDING CONSTRAINTS`` (CHECK; NOT NULL always comes), then the
  columns the job does not map are dropped, with the constraints that name them.
- MySQL/MariaDB: ``LIKE target`` (NOT NULL, defaults, CHECK, indexes), then the indexes are
  dropped, AUTO_INCREMENT is taken off (a staged 0 must stay 0), and the unmapped columns and the
  table CHECKs that name them are dropped.
- SQLite: written from the target's own DDL (highmark/destinations/sqlite_ddl.py); DDL that reader
  does not follow gives the stage without constraints of before, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Connection, text

from highmark.destinations import sqlite_ddl

log = logging.getLogger(__name__)


def stage_statements(
    conn: Connection,
    dialect: str,
    quote: Callable[[str], str],
    target: tuple[str | None, str],
    stage: tuple[str | None, str],
    columns: tuple[list[str], list[str]],
    empty_copy: str,
) -> list[str]:
    """The statements, in order, that create ``stage`` (schema, name) for ``target``.

    ``columns`` is (the target's mapped columns, all its columns); ``empty_copy`` is the
    ``CREATE TABLE … AS`` an empty copy of the mapped columns, the fallback."""
    mapped, every = columns
    unmapped = [c for c in every if c not in mapped]
    quoted_target, quoted_stage = _qualified(quote, *target), _qualified(quote, *stage)
    if dialect == "postgresql":
        drops = ", ".join(f"DROP COLUMN {quote(c)}" for c in unmapped)
        like = f"CREATE TABLE {quoted_stage} (LIKE {quoted_target} INCLUDING CONSTRAINTS)"
        return [like, *([f"ALTER TABLE {quoted_stage} {drops}"] if drops else [])]
    if dialect == "mysql":
        like = f"CREATE TABLE {quoted_stage} LIKE {quoted_target}"
        return [like, *_mysql_alter(conn, quote, target, quoted_stage, unmapped)]
    if dialect == "sqlite":
        schema, name = target
        master = f"{quote(schema)}.sqlite_master" if schema else "sqlite_master"
        ddl = conn.execute(
            text(f"SELECT sql FROM {master} WHERE type = 'table' AND name = :name COLLATE NOCASE"),
            {"name": name},
        ).scalar()
        try:
            return [sqlite_ddl.stage_sql(str(ddl), quoted_stage, mapped, quote)]
        except sqlite_ddl.UnreadableDdl as exc:
            log.warning(
                "the staging table of %s goes without the target's constraints: its DDL is "
                "not understood (%s); a row they refuse fails the final merge",
                name, exc,
            )  # fmt: skip
    return [empty_copy]


def _mysql_alter(
    conn: Connection,
    quote: Callable[[str], str],
    target: tuple[str | None, str],
    quoted_stage: str,
    unmapped: list[str],
) -> list[str]:
    """The one ALTER that leaves a ``LIKE`` copy of the target with no index, no AUTO_INCREMENT
    and only the mapped columns (with the CHECKs that name no other)."""
    where = "table_schema = COALESCE(:schema, DATABASE()) AND table_name = :name"
    names = {"schema": target[0], "name": target[1]}
    changes = [
        f"MODIFY {quote(name)} {kind}{' NOT NULL' if nullable == 'NO' else ''}"
        for name, kind, nullable in conn.execute(
            text(
                "SELECT column_name, column_type, is_nullable FROM information_schema.columns "
                f"WHERE {where} AND extra LIKE '%auto_increment%'"
            ),
            names,
        )
    ]
    # CHECK_CLAUSE names every column in backquotes.
    named = [f"`{c.replace('`', '``')}`".lower() for c in unmapped]
    for constraint, clause in conn.execute(
        text(
            "SELECT constraint_name, check_clause FROM information_schema.check_constraints "
            "WHERE constraint_schema = COALESCE(:schema, DATABASE()) AND table_name = :name "
            "AND level = 'Table'"
        ),
        names,
    ):
        if any(n in str(clause).lower() for n in named):
            changes.append(f"DROP CONSTRAINT {quote(constraint)}")
    changes += [f"DROP COLUMN {quote(c)}" for c in unmapped]
    for (index,) in conn.execute(
        text(f"SELECT DISTINCT index_name FROM information_schema.statistics WHERE {where}"),
        names,
    ):
        changes.append("DROP PRIMARY KEY" if index == "PRIMARY" else f"DROP INDEX {quote(index)}")
    return [f"ALTER TABLE {quoted_stage} {', '.join(changes)}"] if changes else []


def _qualified(quote: Callable[[str], str], schema: str | None, name: str) -> str:
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)
