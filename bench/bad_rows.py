"""What bad rows cost: a load of N rows with 10 bad rows against the same load with none.

``.venv/bin/python bench/bad_rows.py [--rows N] [--backend sqlite,postgresql] [--repeat R]``

Two source tables of N identical rows, except that in one of them 10 rows, spread over 10
batches, have a negative amount, which the target's ``CHECK (amount >= 0)`` refuses. Each is
loaded by a job with ``on_bad_rows: quarantine`` into an empty target (the first load, straight
into the target; PostgreSQL to PostgreSQL by COPY ranges), through the real ``Project.run``. The
loads alternate (clean, bad, clean, bad…) so that whatever else the machine does hits both; the
report gives the median of each, their ratio, and the rows the bad load wrote and quarantined
(checked: N - 10 written, 10 quarantined, the clean load N written).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text

from highmark import Project, RunStatus

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BAD_ROWS = 10
BATCH_SIZE = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="bench/RESULTS-bad-rows.md")
    args = parser.parse_args()
    lines = [
        "# Bad rows: a load with 10 bad rows against the same load with none",
        "",
        f"`{' '.join(['.venv/bin/python', *sys.argv])}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores (shared with other work: compare the ratio, not the seconds). "
        f"{args.rows:,} rows in batches of {BATCH_SIZE:,}; `on_bad_rows: quarantine`; "
        f"medians of {args.repeat} alternating loads each. CPU: of the highmark process alone "
        "(on SQLite all the work; on PostgreSQL the client's share), less disturbed by the "
        "machine's other load than the wall time.",
        "",
        "| backend | path | clean (s) | 10 bad rows (s) | ratio | clean, CPU (s) | "
        "10 bad rows, CPU (s) | CPU ratio | written | quarantined |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend in args.backend.split(","):
        print(f"{backend}: seeding {args.rows:,} rows twice", file=sys.stderr)
        with _database(backend) as url, tempfile.TemporaryDirectory() as tmp:
            lines.append(_measure(backend, url, Path(tmp), args.rows, args.repeat))
    report = "\n".join(lines) + "\n"
    Path(args.out).write_text(report)
    print(report)


def _measure(backend: str, url: str, tmp: Path, rows: int, repeat: int) -> str:
    bad_ids = [rows * (2 * k + 1) // (2 * BAD_ROWS) for k in range(BAD_ROWS)]
    _seed(url, "orders_clean", rows, [])
    _seed(url, "orders_bad", rows, bad_ids)
    times: dict[str, list[float]] = {"clean": [], "bad": []}
    cpu: dict[str, list[float]] = {"clean": [], "bad": []}
    outcome: dict[str, tuple[int, int]] = {}
    for rep in range(repeat):
        for kind in ("clean", "bad"):
            target = f"t_{kind}_{rep}"
            _target(url, target)
            project = _project(tmp / f"{kind}{rep}", url, f"orders_{kind}", target)
            started, started_cpu = time.perf_counter(), time.process_time()
            run = project.run("load")
            times[kind].append(time.perf_counter() - started)
            cpu[kind].append(time.process_time() - started_cpu)
            assert run.run_status is RunStatus.SUCCESS, run.error_message
            outcome[kind] = (run.rows_written, run.rows_rejected or 0)
            print(f"{backend} {kind} #{rep + 1}: {times[kind][-1]:.1f} s", file=sys.stderr)
            _drop(url, target)
    assert outcome["clean"] == (rows, 0), outcome
    assert outcome["bad"] == (rows - BAD_ROWS, BAD_ROWS), outcome
    clean, bad = statistics.median(times["clean"]), statistics.median(times["bad"])
    clean_cpu, bad_cpu = statistics.median(cpu["clean"]), statistics.median(cpu["bad"])
    path = "COPY ranges" if backend == "postgresql" else "executemany"
    return (
        f"| {backend} | first load, {path} | {clean:.1f} | {bad:.1f} | {bad / clean:.2f} | "
        f"{clean_cpu:.1f} | {bad_cpu:.1f} | {bad_cpu / clean_cpu:.2f} | "
        f"{outcome['bad'][0]:,} | {outcome['bad'][1]} |"
    )


def _project(folder: Path, url: str, source: str, target: str) -> Project:
    folder.mkdir(parents=True)
    document: dict[str, Any] = {
        "control": f"sqlite:///{folder / 'control.db'}",
        "connections": {"db": url},
        "on_bad_rows": "quarantine",
        "jobs": {
            "load": {
                "load_type": "incremental",
                "source": {"connection": "db", "table": source},
                "target": {"connection": "db", "table": target},
                "primary_key": ["id"],
                "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
                "batch_size": BATCH_SIZE,
            }
        },
    }
    path = folder / "highmark.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return Project.load(path)


COLUMNS = "id BIGINT PRIMARY KEY, customer VARCHAR(100) NOT NULL, amount NUMERIC(12, 2) NOT NULL"


def _seed(url: str, table: str, rows: int, bad: list[int]) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"CREATE TABLE {table} ({COLUMNS}, updated_at TIMESTAMPTZ NOT NULL)"))
            conn.execute(
                text(
                    f"INSERT INTO {table} SELECT i, 'customer ' || i, "
                    "CASE WHEN i = ANY(:bad) THEN -1 ELSE i % 1000 + 0.25 END, "
                    "timestamptz '2024-01-01' + i * interval '1 second' "
                    "FROM generate_series(1, :n) AS i"
                ),
                {"bad": bad, "n": rows},
            )
            conn.execute(text(f"CREATE INDEX ON {table} (updated_at, id)"))
            conn.execute(text(f"ANALYZE {table}"))
            return
        conn.execute(text(f"CREATE TABLE {table} ({COLUMNS}, updated_at TIMESTAMP NOT NULL)"))
        bad_set = set(bad)
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        for start in range(1, rows + 1, 100_000):
            cursor.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                [
                    (
                        i,
                        f"customer {i}",
                        -1 if i in bad_set else i % 1000 + 0.25,
                        datetime.fromtimestamp(1704067200 + i, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                    )
                    for i in range(start, min(start + 100_000, rows + 1))
                ],
            )
        conn.execute(text(f"CREATE INDEX ix_{table} ON {table} (updated_at, id)"))
    engine.dispose()


def _target(url: str, table: str) -> None:
    engine = create_engine(url)
    stamp = "TIMESTAMPTZ" if engine.dialect.name == "postgresql" else "TIMESTAMP"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {table} ({COLUMNS}, updated_at {stamp} NOT NULL, "
                "CONSTRAINT amount_not_negative CHECK (amount >= 0))"
            )
        )
    engine.dispose()


def _drop(url: str, table: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))
    engine.dispose()


@contextmanager
def _database(backend: str) -> Iterator[str]:
    """A throwaway database on the local server (SQLite: a file)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/data.db"
        return
    if backend != "postgresql":
        raise SystemExit(f"unknown backend {backend!r} (sqlite, postgresql)")
    name = f"hm_bench_bad_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        from highmark import db

        db.dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
