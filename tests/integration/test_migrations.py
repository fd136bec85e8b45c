"""The control store's schema on real SQLite, PostgreSQL and MariaDB: what the migrations create,
how a store is opened and upgraded, and how a store newer than this code is refused."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Integer,
    SmallInteger,
    String,
    Text,
    event,
    inspect,
    text,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from highmark import db as highmark_db
from highmark.config import normalize_url
from highmark.errors import StoreVersionError
from highmark.store import migrate
from highmark.store.store import ControlStore, JobDefinition
from highmark.store.tables import VERSION_TABLE, metadata

REPO = Path(__file__).resolve().parents[2]
FUTURE_REVISION = "9999_from_the_future"

# The reference's columns (shared/reference/000; checkpoint_data: 003): name -> (kind, NOT NULL).
REFERENCE_COLUMNS: dict[str, dict[str, tuple[Any, bool]]] = {
    "etl_jobs": {
        "job_id": (("varchar", 100), True),
        "job_name": (("varchar", 255), True),
        "description": ("text", False),
        "source_table": (("varchar", 255), False),
        "target_table": (("varchar", 255), False),
        "load_type": (("varchar", 50), True),
        "schedule": (("varchar", 100), False),
        "is_active": ("boolean", False),
        "timeout_seconds": ("int", False),
        "retry_count": ("int", False),
        "created_at": ("timestamp", False),
        "updated_at": ("timestamp", False),
        "checkpoint_data": ("json", False),
    },
    "etl_job_runs": {
        "run_id": ("bigint", True),
        "job_id": (("varchar", 100), True),
        "run_status": (("varchar", 50), True),
        "started_at": ("timestamp", True),
        "finished_at": ("timestamp", False),
        "duration_seconds": ("int", False),
        "rows_read": ("bigint", False),
        "rows_written": ("bigint", False),
        "rows_updated": ("bigint", False),
        "rows_deleted": ("bigint", False),
        "watermark_start": ("timestamp", False),
        "watermark_end": ("timestamp", False),
        "error_message": ("text", False),
        "error_details": ("json", False),
        "triggered_by": (("varchar", 100), False),
    },
    "etl_watermarks": {
        "job_id": (("varchar", 100), True),
        "source_table": (("varchar", 255), True),
        "watermark_column": (("varchar", 100), True),
        "watermark_type": (("varchar", 50), True),
        "last_value_timestamp": ("timestamp", False),
        "last_value_integer": ("bigint", False),
        "last_successful_run_id": ("bigint", False),
        "last_updated_at": ("timestamp", False),
    },
}
JSON_COLUMNS = [
    ("etl_jobs", "checkpoint_data"),
    ("etl_jobs", "definition"),
    ("etl_job_runs", "error_details"),
]


def _url(db_url: str, tmp_path: Path) -> URL:
    return normalize_url(db_url, tmp_path)


def _open(db_url: str, tmp_path: Path) -> ControlStore:
    return ControlStore.open(_url(db_url, tmp_path))


def _versions(connection: Connection) -> list[str]:
    return list(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def _set_future_revision(store: ControlStore) -> None:
    """Make the store look as if a newer highmark had migrated it."""
    with store.engine.begin() as connection:
        connection.execute(text(f"DELETE FROM {VERSION_TABLE}"))
        connection.execute(
            text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": FUTURE_REVISION}
        )


def _schema_differences(connection: Connection) -> list[Any]:
    # The version table is named by highmark, so tell Alembic about it (otherwise it is reported
    # as a table the metadata does not declare).
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return list(compare_metadata(context, metadata))


def _has_kind(column: Any, kind: Any, dialect: str) -> bool:
    type_ = column["type"]
    if isinstance(kind, tuple):  # ("varchar", length)
        return isinstance(type_, String) and not isinstance(type_, Text) and type_.length == kind[1]
    if kind == "text":
        return isinstance(type_, Text)
    if kind == "int":
        return isinstance(type_, Integer) and not isinstance(type_, BigInteger | SmallInteger)
    if kind == "bigint":
        if dialect == "sqlite" and column["name"] == "run_id":
            # SQLite's INTEGER PRIMARY KEY is the 64-bit rowid (a BIGINT key would not count up).
            return isinstance(type_, Integer)
        return isinstance(type_, BigInteger)
    if kind == "boolean":
        # MySQL/MariaDB's BOOLEAN is TINYINT(1).
        return isinstance(type_, Boolean) or (
            isinstance(type_, mysql.TINYINT) and type_.display_width == 1
        )
    if kind == "timestamp":
        if dialect == "postgresql":
            return isinstance(type_, postgresql.TIMESTAMP) and type_.timezone
        if dialect == "mysql":
            return isinstance(type_, mysql.DATETIME) and type_.fsp == 6
        return isinstance(type_, DateTime)
    assert kind == "json"
    return True  # checked against the catalogs in test_json_columns


# --------------------------------------------------------------------------- what migrations create


def test_migrations_create_exactly_the_declared_tables(db_url: str, tmp_path: Path) -> None:
    # Through the migrations themselves (a new SQLite store is made otherwise: store/fresh.py).
    store = ControlStore.open(_url(db_url, tmp_path), migrate_schema=False)
    store.migrate()
    with store.engine.connect() as connection:
        assert _schema_differences(connection) == []
        assert set(inspect(connection).get_table_names()) == {*metadata.tables, VERSION_TABLE}
        assert _versions(connection) == [migrate.head_revision()]


def test_reference_columns_exist_with_their_types(db_url: str, tmp_path: Path) -> None:
    store = _open(db_url, tmp_path)
    dialect = store.engine.dialect.name
    with store.engine.connect() as connection:
        inspector = inspect(connection)
        for table, expected in REFERENCE_COLUMNS.items():
            columns = {c["name"]: c for c in inspector.get_columns(table)}
            assert set(expected) <= set(columns), (table, set(expected) - set(columns))
            for name, (kind, not_null) in expected.items():
                column = columns[name]
                assert _has_kind(column, kind, dialect), (table, name, column["type"])
                if not_null:
                    assert column["nullable"] is False, (table, name)


def test_json_columns(db_url: str, tmp_path: Path) -> None:
    """checkpoint_data is JSONB on PostgreSQL; JSON columns are JSON (MariaDB: checked LONGTEXT)."""
    store = _open(db_url, tmp_path)
    dialect = store.engine.dialect
    with store.engine.connect() as connection:
        for table, column in JSON_COLUMNS:
            if dialect.name == "postgresql":
                data_type = connection.execute(
                    text(
                        "SELECT data_type FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name = :t "
                        "AND column_name = :c"
                    ),
                    {"t": table, "c": column},
                ).scalar_one()
                assert data_type == ("jsonb" if column == "checkpoint_data" else "json")
            elif dialect.name == "mysql":
                data_type = connection.execute(
                    text(
                        "SELECT data_type FROM information_schema.columns "
                        "WHERE table_schema = DATABASE() AND table_name = :t AND column_name = :c"
                    ),
                    {"t": table, "c": column},
                ).scalar_one()
                if getattr(dialect, "is_mariadb", False):
                    # MariaDB's JSON is an alias of LONGTEXT guarded by a json_valid() check.
                    assert data_type.lower() == "longtext"
                    checks = connection.execute(
                        text(
                            "SELECT check_clause FROM information_schema.check_constraints "
                            "WHERE constraint_schema = DATABASE() AND table_name = :t"
                        ),
                        {"t": table},
                    ).scalars()
                    assert f"json_valid(`{column}`)" in {c.lower() for c in checks}
                else:
                    assert data_type.lower() == "json"
            else:
                declared = {
                    row.name: row.type
                    for row in connection.execute(text(f"PRAGMA table_info({table})"))
                }
                assert declared[column] == "JSON"

    if dialect.name in ("postgresql", "mysql"):
        # ...and the database itself refuses a checkpoint that is not JSON.
        with pytest.raises(DBAPIError), store.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO etl_jobs (job_id, job_name, load_type, checkpoint_data) "
                    "VALUES ('j', 'j', 'full', 'not json')"
                )
            )


def test_reference_indexes_and_keys(db_url: str, tmp_path: Path) -> None:
    store = _open(db_url, tmp_path)
    dialect = store.engine.dialect.name
    with store.engine.connect() as connection:
        inspector = inspect(connection)
        indexes = {
            (table, index["name"]): index["column_names"]
            for table in metadata.tables
            for index in inspector.get_indexes(table)
        }
        assert indexes[("etl_jobs", "idx_etl_jobs_active")] == ["is_active"]
        assert indexes[("etl_job_runs", "idx_etl_runs_job")] == ["job_id", "started_at"]
        assert indexes[("etl_job_runs", "idx_etl_runs_status")] == ["run_status", "started_at"]

        # idx_etl_runs_job is (job_id, started_at DESC), as the reference declares it.
        if dialect == "postgresql":
            definition = connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_etl_runs_job'")
            ).scalar_one()
            assert "(job_id, started_at DESC)" in definition
        elif dialect == "mysql":
            order = connection.execute(
                text(
                    "SELECT column_name, collation FROM information_schema.statistics "
                    "WHERE table_schema = DATABASE() AND index_name = 'idx_etl_runs_job' "
                    "ORDER BY seq_in_index"
                )
            ).all()
            assert [tuple(r) for r in order] == [("job_id", "A"), ("started_at", "D")]
        else:
            order = connection.execute(text("PRAGMA index_xinfo(idx_etl_runs_job)")).all()
            assert [(r.name, r.desc) for r in order if r.key] == [
                ("job_id", 0),
                ("started_at", 1),
            ]

        assert inspector.get_pk_constraint("etl_watermarks")["constrained_columns"] == [
            "job_id",
            "source_table",
        ]
        assert inspector.get_pk_constraint("etl_jobs")["constrained_columns"] == ["job_id"]
        assert inspector.get_pk_constraint("etl_job_runs")["constrained_columns"] == ["run_id"]
        for table in ("etl_job_runs", "etl_watermarks"):
            keys = inspector.get_foreign_keys(table)
            assert [(k["constrained_columns"], k["referred_table"], k["referred_columns"])
                    for k in keys] == [(["job_id"], "etl_jobs", ["job_id"])]  # fmt: skip


def test_reference_defaults(db_url: str, tmp_path: Path) -> None:
    """Rows written with only the required columns get the reference's defaults."""
    store = _open(db_url, tmp_path)
    with store.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO etl_jobs (job_id, job_name, load_type) VALUES ('j', 'J', 'full')")
        )
        connection.execute(
            text("INSERT INTO etl_job_runs (job_id, run_status) VALUES ('j', 'running')")
        )
        connection.execute(
            text(
                "INSERT INTO etl_watermarks (job_id, source_table, watermark_column, "
                "watermark_type) VALUES ('j', 'orders', 'id', 'integer')"
            )
        )
    job = store.get_job("j")
    assert (job.is_active, job.timeout_seconds, job.retry_count) == (True, 3600, 3)
    assert job.created_at is not None and job.updated_at is not None
    [run] = store.list_runs(job_id="j")
    assert run.started_at is not None
    assert (run.rows_read, run.rows_written, run.rows_updated, run.rows_deleted) == (0, 0, 0, 0)
    mark = store.get_watermark("j")
    assert mark is not None and mark.last_updated_at is not None


# --------------------------------------------------------------------------- opening and upgrading


def test_open_migrates_an_empty_database_and_reopening_is_a_noop(
    db_url: str, tmp_path: Path
) -> None:
    url = _url(db_url, tmp_path)
    empty = ControlStore.open(url, migrate_schema=False)
    with empty.engine.connect() as connection:
        assert inspect(connection).get_table_names() == []

    store = ControlStore.open(url)
    with store.engine.connect() as connection:
        assert _versions(connection) == [migrate.head_revision()]
        assert _schema_differences(connection) == []
    store.sync_jobs([_job("kept")])
    highmark_db.dispose_all()

    # Opening again, and migrating explicitly, change nothing: no DDL, no writes.
    again = ControlStore.open(url, migrate_schema=False)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(again.engine, "before_cursor_execute", record)
    try:
        again.ensure_schema()
        assert again.migrate() == (migrate.head_revision(), migrate.head_revision())
    finally:
        event.remove(again.engine, "before_cursor_execute", record)
    writes = ("create", "alter", "drop", "insert", "update", "delete")
    assert statements  # it did look at the version table
    assert [s for s in statements if s.strip().lower().startswith(writes)] == []
    assert [j.job_id for j in again.list_jobs()] == ["kept"]
    with again.engine.connect() as connection:
        assert _versions(connection) == [migrate.head_revision()]


def test_a_store_newer_than_this_code_is_refused(db_url: str, tmp_path: Path) -> None:
    url = _url(db_url, tmp_path)
    _set_future_revision(ControlStore.open(url))
    highmark_db.dispose_all()

    with pytest.raises(StoreVersionError, match="newer") as refused:
        ControlStore.open(url)
    assert FUTURE_REVISION in str(refused.value)
    assert refused.value.exit_code == 2

    store = ControlStore.open(url, migrate_schema=False)
    with pytest.raises(StoreVersionError, match="newer"):
        store.migrate()
    with store.engine.connect() as connection:
        assert _versions(connection) == [FUTURE_REVISION]  # left as it was


def test_a_store_with_an_extra_unknown_revision_is_refused(db_url: str, tmp_path: Path) -> None:
    url = _url(db_url, tmp_path)
    store = ControlStore.open(url)
    with store.engine.begin() as connection:  # e.g. a newer highmark's second migration branch
        connection.execute(
            text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": FUTURE_REVISION}
        )
    highmark_db.dispose_all()
    with pytest.raises(StoreVersionError, match="newer"):
        ControlStore.open(url)


def test_cli_migrate_refuses_a_newer_store(
    db_url: str, tmp_path: Path, write_project: Callable[..., Path]
) -> None:
    _set_future_revision(_open(db_url, tmp_path))
    highmark_db.dispose_all()
    project = write_project(control=db_url, connections={}, jobs={})

    result = subprocess.run(
        [sys.executable, "-m", "highmark", "--project", str(project), "migrate"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )

    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("highmark: error:")
    assert "newer" in lines[0] and FUTURE_REVISION in lines[0]


_OPEN_WHEN_TOLD = """
import sys
from sqlalchemy.engine import make_url
from highmark.store.store import ControlStore
print("ready", flush=True)
sys.stdin.readline()
ControlStore.open(make_url(sys.argv[1]))
print("opened", flush=True)
"""


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_two_processes_auto_migrating_a_fresh_store(db_url: str, tmp_path: Path) -> None:
    url = _url(db_url, tmp_path).render_as_string(hide_password=False)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_WHEN_TOLD, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    try:
        for child in children:  # both have imported everything and wait at the starting line
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outcomes = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    for child, (out, err) in zip(children, outcomes, strict=True):
        assert child.returncode == 0, err
        assert out.strip() == "opened"
    store = _open(db_url, tmp_path)
    with store.engine.connect() as connection:
        assert _versions(connection) == [migrate.head_revision()]
        assert _schema_differences(connection) == []


def _sqlite_schema(path: Path) -> dict[str, Any]:
    """Every table's columns (type, NOT NULL, default, key), indexes (unique, partial, columns
    and order), foreign keys and CHECK/UNIQUE clauses; every index's DDL."""
    conn = sqlite3.connect(path)
    try:
        schema: dict[str, Any] = {}
        tables = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        for name, sql in tables:
            indexes = sorted(
                (row[1], row[2], row[3], row[4], conn.execute(
                    f"PRAGMA index_xinfo('{row[1]}')").fetchall())
                for row in conn.execute(f"PRAGMA index_list('{name}')")
            )  # fmt: skip
            clauses = sorted(
                " ".join(m.split()) for m in re.findall(r"(?:CHECK|UNIQUE) \([^)]*\)", sql)
            )
            schema[name] = (
                conn.execute(f"PRAGMA table_xinfo('{name}')").fetchall(),
                indexes,
                sorted(conn.execute(f"PRAGMA foreign_key_list('{name}')").fetchall()),
                clauses,
            )
        schema["index DDL"] = sorted(
            conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall()
        )
        schema["other objects"] = conn.execute(
            "SELECT type, name FROM sqlite_master WHERE type NOT IN ('table', 'index')"
        ).fetchall()
        return schema
    finally:
        conn.close()


def test_a_new_sqlite_store_is_made_as_the_migrations_make_it(tmp_path: Path) -> None:
    migrated, made = tmp_path / "migrated.db", tmp_path / "made.db"
    by_migrations = ControlStore.open(_url(f"sqlite:///{migrated}", tmp_path), migrate_schema=False)
    by_migrations.migrate()
    statements: list[str] = []
    new = ControlStore.open(_url(f"sqlite:///{made}", tmp_path), migrate_schema=False)
    event.listen(new.engine, "before_cursor_execute", lambda *a: statements.append(str(a[2])))
    new.ensure_schema()

    assert "alembic" not in " ".join(statements).lower().replace(VERSION_TABLE, "")
    assert _sqlite_schema(made) == _sqlite_schema(migrated)
    with new.engine.connect() as connection:
        assert _versions(connection) == [migrate.head_revision()]
        assert _schema_differences(connection) == []
    # The store works as one made by the migrations: defaults included.
    new.sync_jobs([_job("kept")])
    assert [j.job_id for j in new.list_jobs()] == ["kept"]


def test_a_sqlite_file_holding_other_tables_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE unrelated (x INTEGER)")
    conn.commit()
    conn.close()
    store = ControlStore.open(_url(f"sqlite:///{path}", tmp_path))
    with store.engine.connect() as connection:
        assert _versions(connection) == [migrate.head_revision()]
        assert set(inspect(connection).get_table_names()) == {
            *metadata.tables,
            VERSION_TABLE,
            "unrelated",
        }


def test_opening_a_fresh_sqlite_store_waits_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "control.db"
    # Another program (or another highmark process) is writing to the not-yet-WAL file.
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    commit_later = threading.Timer(0.5, other.execute, ["COMMIT"])
    try:
        other.execute("CREATE TABLE unrelated (x INTEGER)")
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO unrelated VALUES (1)")
        # Fixed, the open waits (busy timeout) until the writer commits half a second later.
        commit_later.start()
        store = ControlStore.open(_url(f"sqlite:///{path}", tmp_path))
    finally:
        commit_later.join()
        other.close()
    with store.engine.connect() as connection:
        assert _versions(connection) == [migrate.head_revision()]


def _job(job_id: str) -> JobDefinition:
    return JobDefinition(
        job_id=job_id,
        job_name=job_id,
        description=None,
        source_table="orders",
        target_table="orders_copy",
        load_type="full",
        schedule=None,
        is_active=True,
        timeout_seconds=3600,
        retry_count=3,
        definition={},
    )


def test_the_head_revision_constant_matches_the_migrations() -> None:
    from highmark.store.migrate import head_revision
    from highmark.store.tables import HEAD_REVISION

    assert head_revision() == HEAD_REVISION
