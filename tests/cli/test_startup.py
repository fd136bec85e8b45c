"""Start-up: what a command imports (no timings: the modules it loads are what costs time).

``highmark --version`` and ``--help`` need neither SQLAlchemy nor pydantic, and a run with nothing
to do on SQLite imports no other database's dialect or driver, and not Alembic. Each check runs in
a fresh interpreter, since the test process has imported everything already.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

import highmark

# Runs the real command in-process, then reports its exit code, which of the modules named in
# argv[1] (a JSON list) it imported, and how many engines (pools of connections) outlived it.
PROBE = """
import json, sys
watched = json.loads(sys.argv[1])
sys.argv = ["highmark", *sys.argv[2:]]
from highmark.cli import main
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
imported = [m for m in watched if m in sys.modules]
db = sys.modules.get("highmark.db")
engines = len(db._engines) if db is not None else 0
print("\\n" + json.dumps({"code": code, "imported": imported, "engines": engines}))
"""

HEAVY_FOR_VERSION = ["sqlalchemy", "pydantic", "yaml", "psycopg", "pymysql", "alembic", "rich"]
# A SQLite project never needs these: another database's dialect (sqlalchemy.dialects.mysql alone
# imports every MySQL driver's module) or driver, or Alembic when the store is up to date.
FOREIGN_TO_SQLITE = [
    "sqlalchemy.dialects.mysql",
    "sqlalchemy.dialects.postgresql",
    "pymysql",
    "psycopg",
    "alembic",
]


def probe(args: Sequence[str], watched: list[str], cwd: Path) -> tuple[int, list[str], str, int]:
    """Exit code, modules of ``watched`` imported, output, and engines left open."""
    environment = {k: v for k, v in os.environ.items() if k != "HIGHMARK_PROJECT"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(watched), *args],
        check=False,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    return report["code"], report["imported"], done.stdout + done.stderr, report["engines"]


def test_importing_highmark_imports_no_database_library(tmp_path: Path) -> None:
    code = (
        "import json, sys, highmark, highmark.cli\n"
        f"print(json.dumps([m for m in {HEAVY_FOR_VERSION!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["run", "--help"]])
def test_version_and_help_import_no_database_library(args: list[str], tmp_path: Path) -> None:
    code, imported, output, _ = probe(args, HEAVY_FOR_VERSION, tmp_path)
    assert code == 0, output
    assert imported == [], output


def test_public_names_resolve_lazily() -> None:
    from highmark.models import RunStatus
    from highmark.project import Project

    assert highmark.Project is Project
    assert highmark.RunStatus is RunStatus
    for name in highmark.__all__:
        assert getattr(highmark, name) is not None, name
    assert set(highmark.__all__) <= set(dir(highmark))
    with pytest.raises(AttributeError):
        highmark.NoSuchName  # noqa: B018


def sqlite_project(directory: Path) -> Path:
    with sqlite3.connect(directory / "shop.db") as db:
        db.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, amount NUMERIC, updated_at TEXT NOT NULL)"
        )
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [(i, i * 1.5, f"2025-01-01 00:00:{i:02d}.000000") for i in range(1, 21)],
        )
    return orders_project(directory, "sqlite:///shop.db")


def orders_project(directory: Path, source: str) -> Path:
    """A project whose one job loads ``orders`` from ``source`` into a SQLite warehouse."""
    project = {
        "control": "sqlite:///.highmark/control.db",
        "connections": {"shop": source, "warehouse": "sqlite:///warehouse.db"},
        "jobs": {
            "orders_sync": {
                "load_type": "incremental",
                "source": {"connection": "shop", "table": "orders"},
                "target": {"connection": "warehouse", "table": "orders"},
                "primary_key": ["id"],
                "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
            }
        },
    }
    (directory / "highmark.yml").write_text(yaml.safe_dump(project, sort_keys=False))
    return directory


def test_a_sqlite_run_with_nothing_to_do_imports_no_other_database(tmp_path: Path) -> None:
    project = sqlite_project(tmp_path)
    code, _, output, _ = probe(["run", "orders_sync"], [], project)  # the first load
    assert code == 0 and "20 read" in output, output
    code, imported, output, _ = probe(["run", "orders_sync"], FOREIGN_TO_SQLITE, project)
    assert code == 0 and "0 read" in output, output
    assert imported == [], output


def test_a_command_closes_its_pooled_connections_before_it_exits(
    tmp_path: Path, pg_url: str
) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, updated_at timestamptz)")
        conn.execute("INSERT INTO orders VALUES (1, now() - interval '1 day')")
    orders_project(tmp_path, pg_url)
    for expected in ("1 read", "0 read"):
        # main() leaves start-up's objects to the OS at exit (gc.freeze): a pooled connection
        # left open would be dropped without a goodbye, which a server logs or counts.
        code, _, output, engines = probe(["run", "orders_sync"], [], tmp_path)
        assert code == 0 and expected in output, output
        assert engines == 0, output
