"""Bringing a control store's schema up to date with Alembic, safely across processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from highmark.errors import StoreError, StoreVersionError
from highmark.store.tables import VERSION_TABLE

_MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_NAME = "highmark_migrate"
_MYSQL_LOCK_TIMEOUT_SECONDS = 60
_PG_LOCK_KEY = 0x68_69_67_68  # "high"


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The store's revision; a store with several (a newer highmark's branches) is refused."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    heads = context.get_current_heads()
    for head in heads:
        check_not_newer(head)
    if len(heads) > 1:
        raise StoreVersionError(
            f"the control store's schema has several revisions ({', '.join(heads)}); "
            "it was written by another highmark version: upgrade highmark to use it"
        )
    return heads[0] if heads else None


def check_not_newer(revision: str | None) -> None:
    """Refuse a store whose schema was written by a newer highmark."""
    if revision is None:
        return
    scripts = ScriptDirectory.from_config(_alembic_config())
    if not _known(scripts, revision):
        raise StoreVersionError(
            f"the control store's schema (revision {revision}) is newer than this highmark "
            f"(which knows up to {head_revision()}); upgrade highmark to use it"
        )


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    return any(script.revision == revision for script in scripts.walk_revisions())


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to head under a cross-process lock; return (revision before, revision after)."""
    with engine.connect() as connection, _migration_lock(connection):
        before = current_revision(connection)
        check_not_newer(before)
        if connection.in_transaction():
            connection.commit()
        if before != head_revision():
            command.upgrade(_alembic_config(connection), "head")
            if connection.in_transaction():
                connection.commit()
        return before, head_revision()


def is_current(engine: Engine) -> bool:
    """True when the store is at head (the cheap check every command makes first)."""
    with engine.connect() as connection:
        revision = current_revision(connection)
    check_not_newer(revision)
    return revision == head_revision()


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """Serialise migrations of one store between processes (SQLite serialises by itself)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
            connection.commit()
    elif dialect == "mysql":
        # One lock per database: stores on one server do not wait for each other.
        name = f"{_LOCK_NAME}.{connection.exec_driver_sql('SELECT DATABASE()').scalar()}"[:64]
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :timeout)"),
            {"name": name, "timeout": _MYSQL_LOCK_TIMEOUT_SECONDS},
        ).scalar()
        connection.commit()
        if got != 1:
            raise StoreError("another process has been migrating this control store for 60s")
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
            connection.commit()
    else:
        yield
