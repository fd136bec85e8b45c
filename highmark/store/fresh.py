"""A new SQLite control store, made in one transaction from the declared tables.

Running the migrations one by one on an empty SQLite file costs ~0.3 s (Alembic's import and a
batch-mode table copy for each change): a third of a new user's first ``highmark run`` on a
small table. On an empty SQLite file the end state is known, so it is created directly — the
declared tables (highmark/store/tables.py) and the version row at head — in the one
``BEGIN IMMEDIATE`` transaction every control-store write on SQLite takes. A test compares the
two schemas column by column, index by index (tests/integration/test_migrations.py).

PostgreSQL and MySQL/MariaDB stores are always made by the migrations: they are made once, by an
operator, under the cross-process lock of highmark/store/migrate.py.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from highmark.store.tables import HEAD_REVISION, VERSION_TABLE, metadata

# Alembic's own DDL for its version table (what the migrations leave on SQLite).
_VERSION_DDL = (
    f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
    f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
)


def create_new_sqlite_store(engine: Engine) -> bool:
    """Create every control table at head in an empty SQLite database; False (and nothing done)
    when the database is not SQLite or already holds a table."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.begin() as connection:
        # Inside BEGIN IMMEDIATE: a process that created the store meanwhile is seen here.
        tables = connection.execute(
            text("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
        ).scalar_one()
        if tables:
            return False
        metadata.create_all(connection)
        connection.execute(text(_VERSION_DDL))
        connection.execute(
            text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": HEAD_REVISION}
        )
    return True
