"""``highmark demo DIR``: a real project on SQLite, run twice, so a new user sees highmark work.

It writes DIR/shop.db (sample orders), DIR/highmark.yml (one incremental job into
DIR/warehouse.db), then runs the job, changes the source (updates, inserts, soft deletes), runs it
again and shows ``highmark status`` — each step through the real command line.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

ORDERS = 5_000
PROJECT_FILE = """\
# A highmark project: connections, and the jobs that move rows between them.
control: sqlite:///.highmark/control.db
connections:
  shop: sqlite:///shop.db
  warehouse: sqlite:///warehouse.db
jobs:
  orders_sync:
    name: Orders sync
    description: New and changed orders into the warehouse
    load_type: incremental
    source: {connection: shop, table: orders}
    target: {connection: warehouse, table: orders}
    primary_key: [id]
    watermark: {column: updated_at, type: timestamp, tiebreaker: id}
    soft_delete: {column: deleted_at, mode: mark}
    batch_size: 1000
    schedule: "*/15 * * * *"
"""

_SCHEMA = """
CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    status      TEXT NOT NULL,
    amount      NUMERIC(12, 2) NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    deleted_at  TIMESTAMP
);
CREATE INDEX idx_orders_updated_at ON orders (updated_at, id);
"""
_NOW_SQL = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def create_shop(path: Path, rows: int = ORDERS) -> None:
    """Sample orders; many share a timestamp, as rows written by one batch job do."""
    rng = random.Random(42)
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA)
        data = []
        for i in range(1, rows + 1):
            created = start + timedelta(minutes=i // 7)  # groups of 7 orders share a timestamp
            data.append(
                (i, rng.randint(1, 500), rng.choice(["new", "paid", "shipped"]),
                 f"{rng.randint(100, 100_000) / 100:.2f}", _stamp(created), _stamp(created))
            )  # fmt: skip
        db.executemany(
            "INSERT INTO orders (id, customer_id, status, amount, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            data,
        )


def change_shop(path: Path) -> tuple[int, int, int]:
    """What an application does between two runs: updates, inserts and soft deletes."""
    with sqlite3.connect(path) as db:
        updated = db.execute(
            f"UPDATE orders SET status = 'shipped', updated_at = {_NOW_SQL}"
            " WHERE id % 200 = 0 AND deleted_at IS NULL"
        ).rowcount
        deleted = db.execute(
            f"UPDATE orders SET deleted_at = {_NOW_SQL}, updated_at = {_NOW_SQL}"
            " WHERE id IN (7, 77, 777)"
        ).rowcount
        top = db.execute("SELECT max(id) FROM orders").fetchone()[0]
        inserted = 0
        for i in range(top + 1, top + 26):
            db.execute(
                "INSERT INTO orders (id, customer_id, status, amount, created_at)"
                f" VALUES (?, ?, 'new', ?, {_NOW_SQL})",
                (i, i % 500, "19.99"),
            )
            inserted += 1
    return updated, inserted, deleted


def _highmark(project: Path, *args: str) -> None:
    shown = " ".join(("highmark", *args))
    click.secho(f"\n$ {shown}", bold=True)
    result = subprocess.run(
        [sys.executable, "-m", "highmark", "--project", str(project), *args], check=False
    )
    if result.returncode != 0:
        raise click.ClickException(f"`{shown}` exited with {result.returncode}")


def run_demo(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise click.ClickException(f"{directory} is not empty; name a new folder for the demo")
    project = directory / "highmark.yml"
    create_shop(directory / "shop.db")
    project.write_text(PROJECT_FILE)
    click.echo(f"Created {directory}/shop.db with {ORDERS:,} orders, and {project}:")
    click.echo(PROJECT_FILE)
    _highmark(project, "run", "orders_sync")
    updated, inserted, deleted = change_shop(directory / "shop.db")
    click.secho(
        f"\n# the shop changes: {updated} orders updated, {inserted} new, {deleted} soft-deleted",
        fg="cyan",
    )
    _highmark(project, "run", "orders_sync")
    _highmark(project, "status")
    _highmark(project, "watermark", "show", "orders_sync")
    click.echo(
        f"\nThe project is yours to explore: cd {directory} && highmark runs "
        "(or edit highmark.yml and run again)."
    )
