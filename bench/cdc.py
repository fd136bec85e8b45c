"""CDC and reconcile benchmarks (bench/README.md): ``.venv/bin/python bench/cdc.py``.

1. **CDC apply rate**, on PostgreSQL and on MariaDB: a source ``orders`` of ``--rows`` rows is
   loaded by a CDC job and by an incremental job (timestamp watermark, soft deletes) into two
   targets in the same database. Then ``--changes`` changes are made at the source in
   transactions of 100 (45 % updates, 45 % inserts, 10 % soft deletes, ``updated_at`` bumped, so
   that the incremental path sees them all), and each job runs once: whole ``highmark run``
   processes, start-up included. Changes per second = changes / wall time. Both targets are then
   checked equal to the source (row count and an MD5 over every column in id order).
2. **Reconcile** of a PostgreSQL → PostgreSQL job over a table of ``--reconcile-rows`` rows: when
   source and target match, and after ``--differences`` target rows were changed (the report must
   find exactly those).

Medians of ``--repeat`` runs for reconcile; the CDC phase runs once per database (a repetition
needs a new source). The report goes to bench/RESULTS-cdc.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
HIGHMARK = ROOT / ".venv" / "bin" / "highmark"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MY_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"


def _engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    elif url.startswith("mysql://"):
        url = url.replace("mysql://", "mysql+pymysql://", 1) + "?charset=utf8mb4"
    return create_engine(url)


class Database:
    """A throwaway database on the local PostgreSQL or MariaDB."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.name = f"hmbench_{uuid.uuid4().hex[:10]}"
        admin = PG_ADMIN if backend == "postgresql" else MY_ADMIN
        self.admin = create_engine(admin, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {self.name}"))
        self.url = (
            f"postgresql://postgres@127.0.0.1:5432/{self.name}"
            if backend == "postgresql"
            else f"mysql://root@127.0.0.1:3306/{self.name}"
        )
        self.engine = _engine(self.url)

    def drop(self) -> None:
        self.engine.dispose()
        with self.admin.connect() as conn:
            if self.backend == "postgresql":
                for (slot,) in conn.execute(
                    text("SELECT slot_name FROM pg_replication_slots WHERE database = :d"),
                    {"d": self.name},
                ).all():
                    conn.execute(text("SELECT pg_drop_replication_slot(:s)"), {"s": slot})
                conn.execute(text(f"DROP DATABASE {self.name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE {self.name}"))
        self.admin.dispose()


def _create_orders(db: Database, rows: int) -> None:
    ts = "timestamptz" if db.backend == "postgresql" else "DATETIME(6)"
    with db.engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE orders (id bigint PRIMARY KEY, customer varchar(100) NOT NULL, "
                f"status varchar(20) NOT NULL, amount numeric(12,2) NOT NULL, note text, "
                f"updated_at {ts} NOT NULL, deleted_at {ts})"
            )
        )
        conn.execute(text("CREATE INDEX orders_updated ON orders (updated_at, id)"))
        if db.backend == "postgresql":
            conn.execute(
                text(
                    "INSERT INTO orders SELECT g, 'customer ' || g, 'open', (g % 1000) + 0.25, "
                    "repeat('x', 40), timestamptz '2024-01-01' + g * interval '1 second', NULL "
                    "FROM generate_series(1, :n) g"
                ),
                {"n": rows},
            )
        else:
            conn.execute(text("SET SESSION max_recursive_iterations = 100000000"))
            for start in range(1, rows + 1, 50_000):
                stop = min(start + 50_000 - 1, rows)
                conn.execute(
                    text(
                        "INSERT INTO orders WITH RECURSIVE g(n) AS (SELECT :a UNION ALL "
                        "SELECT n + 1 FROM g WHERE n < :b) SELECT n, CONCAT('customer ', n), "
                        "'open', (n % 1000) + 0.25, REPEAT('x', 40), "
                        "TIMESTAMP '2024-01-01 00:00:00' + INTERVAL n SECOND, NULL FROM g"
                    ),
                    {"a": start, "b": stop},
                )


def _project(folder: Path, db: Database, batch: int) -> Path:
    base = {
        "source": {"connection": "db", "table": "orders"},
        "primary_key": ["id"],
        "batch_size": batch,
    }
    soft = {"column": "deleted_at", "mode": "mark"}
    jobs = {
        "cdc": {**base, "load_type": "cdc", "target": {"connection": "db", "table": "cdc_copy"}},
        "inc": {
            **base,
            "load_type": "incremental",
            "target": {"connection": "db", "table": "inc_copy"},
            "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
            "soft_delete": soft,
        },
    }
    import yaml

    path = folder / f"{db.name}.yml"
    path.write_text(
        yaml.safe_dump({"control": db.url, "connections": {"db": db.url}, "jobs": jobs})
    )
    return path


def _highmark(project: Path, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [str(HIGHMARK), "--project", str(project), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1) or (result.returncode == 1 and args[0] == "run"):
        raise SystemExit(f"highmark {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout


def _changes(db: Database, count: int, first_new: int, rows: int) -> None:
    """``count`` changes in transactions of 100: updates, inserts, soft deletes."""
    now = "now()" if db.backend == "postgresql" else "UTC_TIMESTAMP(6)"
    done, new_id, step = 0, first_new, 0
    with db.engine.connect() as conn:
        while done < count:
            for i in range(45):
                target = (step * 997 + i * 13) % rows + 1
                conn.execute(
                    text(
                        f"UPDATE orders SET amount = amount + 1, status = 'changed', "
                        f"updated_at = {now} WHERE id = :i"
                    ),
                    {"i": target},
                )
            for _ in range(45):
                conn.execute(
                    text(f"INSERT INTO orders VALUES (:i, 'new', 'open', 1.50, NULL, {now}, NULL)"),
                    {"i": new_id},
                )
                new_id += 1
            for i in range(10):
                target = (step * 7919 + i * 31) % rows + 1
                conn.execute(
                    text(
                        f"UPDATE orders SET deleted_at = {now}, updated_at = {now} "
                        f"WHERE id = :i AND deleted_at IS NULL"
                    ),
                    {"i": target},
                )
            conn.commit()
            done += 100
            step += 1


def _fingerprint(db: Database, table: str) -> tuple[int, str]:
    """Row count and an MD5 over every column in id order, the same on both databases."""
    if db.backend == "postgresql":
        query = (
            f"SELECT count(*), md5(string_agg(concat_ws('|', id, customer, status, "
            f"trim_scale(amount), note, to_char(updated_at AT TIME ZONE 'UTC', "
            f"'YYYY-MM-DD HH24:MI:SS.US'), to_char(deleted_at AT TIME ZONE 'UTC', "
            f"'YYYY-MM-DD HH24:MI:SS.US')), ',' ORDER BY id)) FROM {table}"
        )
    else:
        query = (
            f"SELECT count(*), MD5(GROUP_CONCAT(CONCAT_WS('|', id, customer, status, "
            f"amount + 0, note, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f'), "
            f"DATE_FORMAT(deleted_at, '%Y-%m-%d %H:%i:%s.%f')) ORDER BY id SEPARATOR ',')) "
            f"FROM {table}"
        )
    with db.engine.connect() as conn:
        if db.backend == "mysql":
            conn.execute(text("SET SESSION group_concat_max_len = 4294967295"))
        count, digest = conn.execute(text(query)).one()
    return int(count), str(digest)


def bench_cdc(backend: str, rows: int, changes: int, batch: int, folder: Path) -> dict[str, Any]:
    db = Database(backend)
    try:
        _create_orders(db, rows)
        project = _project(folder, db, batch)
        snapshot_s, _ = _highmark(project, "run", "cdc")
        initial_s, _ = _highmark(project, "run", "inc")
        _changes(db, changes, rows + 1, rows)
        cdc_s, _ = _highmark(project, "run", "cdc")
        inc_s, _ = _highmark(project, "run", "inc")
        source = _fingerprint(db, "orders")
        cdc_ok = _fingerprint(db, "cdc_copy") == source
        # The incremental target marks soft deletes as the source does: same rows, same values.
        inc_ok = _fingerprint(db, "inc_copy") == source
        return {
            "backend": backend, "rows": rows, "changes": changes, "snapshot_s": snapshot_s,
            "initial_s": initial_s, "cdc_s": cdc_s, "inc_s": inc_s,
            "verified": cdc_ok and inc_ok,
        }  # fmt: skip
    finally:
        db.drop()


def bench_reconcile(rows: int, differences: int, repeat: int, folder: Path) -> dict[str, Any]:
    db = Database("postgresql")
    try:
        _create_orders(db, rows)
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE orders_copy AS SELECT * FROM orders"))
            conn.execute(text("ALTER TABLE orders_copy ADD PRIMARY KEY (id)"))
            conn.execute(text("ANALYZE orders_copy"))
        import yaml

        path = folder / f"{db.name}-reconcile.yml"
        job = {
            "load_type": "incremental",
            "source": {"connection": "db", "table": "orders"},
            "target": {"connection": "db", "table": "orders_copy"},
            "primary_key": ["id"],
            "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        }
        path.write_text(
            yaml.safe_dump({"control": db.url, "connections": {"db": db.url}, "jobs": {"j": job}})
        )
        _highmark(path, "migrate")
        match = []
        for _ in range(repeat):
            elapsed, out = _highmark(path, "reconcile", "j", "--json")
            match.append(elapsed)
            assert '"differences": 0' in out, out
        with db.engine.begin() as conn:
            step = rows // differences
            conn.execute(
                text("UPDATE orders_copy SET amount = amount + 1 WHERE id % :s = 0 AND id <= :n"),
                {"s": step, "n": step * differences},
            )
        differ = []
        found = ""
        for _ in range(repeat):
            elapsed, found = _highmark(path, "reconcile", "j", "--json")
            differ.append(elapsed)
        import json

        report = json.loads(found)
        return {
            "rows": rows, "differences": differences,
            "match_s": statistics.median(match), "differ_s": statistics.median(differ),
            "found": report["different"], "rows_fetched": report["rows_fetched"],
            "ranges": report["ranges"], "leaves": report["leaves"],
        }  # fmt: skip
    finally:
        db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--reconcile-rows", type=int, default=1_000_000)
    parser.add_argument("--differences", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="postgresql,mysql")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-cdc.md"))
    args = parser.parse_args()
    folder = Path(f"/tmp/hmbench-{uuid.uuid4().hex[:6]}")
    folder.mkdir()
    cdc = []
    for backend in args.backends.split(","):
        print(f"cdc on {backend}…", file=sys.stderr)
        cdc.append(bench_cdc(backend, args.rows, args.changes, args.batch, folder))
    print("reconcile…", file=sys.stderr)
    rec = bench_reconcile(args.reconcile_rows, args.differences, args.repeat, folder)
    lines = [
        "# CDC and reconcile benchmark",
        "",
        f"`.venv/bin/python bench/cdc.py` on {platform.node()} "
        f"({datetime.now(UTC):%Y-%m-%d}), {sys.platform}, Python {platform.python_version()}. "
        "Whole `highmark` processes, start-up included; see bench/README.md.",
        "",
        f"## CDC apply rate: {args.changes:,} changes after a {args.rows:,}-row snapshot",
        "",
        "| source | CDC run | changes/s | incremental run (same changes) | changes/s "
        "| snapshot (first CDC run) | first incremental load | verified |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in cdc:
        lines.append(
            f"| {r['backend']} | {r['cdc_s']:.2f} s | {r['changes'] / r['cdc_s']:,.0f} "
            f"| {r['inc_s']:.2f} s | {r['changes'] / r['inc_s']:,.0f} "
            f"| {r['snapshot_s']:.2f} s | {r['initial_s']:.2f} s "
            f"| {'yes' if r['verified'] else 'NO'} |"
        )
    lines += [
        "",
        f"## Reconcile, PostgreSQL → PostgreSQL, {rec['rows']:,} rows (median of {args.repeat})",
        "",
        "| case | wall time | found | ranges summed | compared row by row | rows read |",
        "|---|---:|---:|---:|---:|---:|",
        f"| source and target match | {rec['match_s']:.2f} s | 0 | | | |",
        f"| {rec['differences']} rows differ | {rec['differ_s']:.2f} s | {rec['found']} "
        f"| {rec['ranges']} | {rec['leaves']} | {rec['rows_fetched']:,} |",
        "",
    ]
    report = "\n".join(lines)
    Path(args.out).write_text(report)
    print(report)
    if not all(r["verified"] for r in cdc) or rec["found"] != rec["differences"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
