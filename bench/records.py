"""The record writer's benchmark: N GitHub-like pull requests written in pages, on each backend.

``.venv/bin/python bench/records.py [--rows N] [--page P] [--backend sqlite|postgresql|mysql]
[--bad K]``

Phases, each over all N objects in pages of P: a first write into empty tables, the same pages
again (nothing changes, nothing is written), and the pages with 1 % of the objects changed. The
servers are the test servers (PostgreSQL and MariaDB on 127.0.0.1); a database is made per run
and dropped after. ``--bad K`` spreads K objects whose title holds a NUL (refused by PostgreSQL
only) over the N and writes through record_bisect.write_records, which bisects the pages they are
in: what bad records cost (compare with ``--bad 0``, which takes the same path).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from highmark.config import ResolvedConnection, normalize_url
from highmark.destinations.entities import Entity, EntityChanges, Field, FieldType
from highmark.destinations.record_bisect import write_records
from highmark.destinations.records import RecordWriter
from highmark.models import Counts

PULLS = Entity(
    "pull_requests",
    (
        Field("id", FieldType.TEXT),
        Field("number", FieldType.INTEGER),
        Field("title", FieldType.TEXT),
        Field("state", FieldType.TEXT),
        Field("draft", FieldType.BOOLEAN),
        Field("author", FieldType.TEXT),
        Field("created", FieldType.TIMESTAMP),
        Field("updated", FieldType.TIMESTAMP),
        Field("merged", FieldType.TIMESTAMP),
        Field("additions", FieldType.INTEGER),
        Field("labels", FieldType.JSON),
    ),
    version="updated",
)
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def pull(i: int, edit: int = 0, bad: bool = False) -> dict[str, Any]:
    updated = BASE + timedelta(seconds=i + edit * 10**7)
    raw = {
        "id": f"PR_kwDOAB{i:010d}",
        "number": i,
        "title": f"Fix the thing number {i}"
        + (" (edited)" if edit else "")
        + ("\x00" if bad else ""),
        "body": "Lorem ipsum dolor sit amet. " * 40,
        "state": "OPEN",
        "isDraft": False,
        "author": {"login": f"user{i % 97}", "__typename": "User"},
        "createdAt": BASE.isoformat(),
        "updatedAt": updated.isoformat(),
        "mergedAt": None,
        "additions": i % 500,
        "labels": {"nodes": [{"name": f"label-{j}"} for j in range(i % 4)]},
        "repository": {"nameWithOwner": "org/repo"},
    }
    return {
        "id": raw["id"],
        "number": i,
        "title": raw["title"],
        "state": "OPEN",
        "draft": False,
        "author": raw["author"]["login"],
        "created": BASE,
        "updated": updated,
        "merged": None,
        "additions": raw["additions"],
        "labels": raw["labels"]["nodes"],
        "raw": raw,
    }


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    name = f"hm_bench_{uuid.uuid4().hex[:8]}"
    if backend == "postgresql":
        admin_url, url = (
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
            "postgresql://postgres@127.0.0.1:5432/",
        )
    else:
        admin_url, url = "mysql+pymysql://root@127.0.0.1:3306/", "mysql://root@127.0.0.1:3306/"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield url + name
    finally:
        from highmark.db import dispose_all

        dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name}"))
        admin.dispose()


def run(backend: str, rows: int, page: int, bad: int | None = None) -> None:
    every = rows // bad if bad else 0
    with database(backend) as url:
        connection = ResolvedConnection("bench", normalize_url(url, Path.cwd()), "UTC")
        with RecordWriter(connection, "gh_", [PULLS]) as writer:
            writer.prepare()
            for phase, edit_every in [("first write", 0), ("same again", 0), ("1 % changed", 100)]:
                started = time.perf_counter()
                total, refused = Counts(), 0
                for start in range(0, rows, page):
                    objects = [
                        pull(
                            i,
                            1 if edit_every and i % edit_every == 0 else 0,
                            bool(every) and i % every == every // 2,
                        )
                        for i in range(start, min(start + page, rows))
                    ]
                    changes = [EntityChanges("pull_requests", upserts=objects)]
                    if bad is None:
                        total += writer.write(changes)
                        continue
                    written = write_records(writer, changes)
                    total += written.counts
                    refused += len(written.refused)
                elapsed = time.perf_counter() - started
                print(
                    f"{backend:10} page {page:5}  {phase:12} {elapsed:6.2f} s  "
                    f"{rows / elapsed:8.0f} rows/s  written {total.rows_written} "
                    f"updated {total.rows_updated}" + ("" if bad is None else f" refused {refused}")
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page", type=int, action="append")
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql", "mysql"])
    parser.add_argument("--bad", type=int, help="bad objects among the rows (NUL in the title)")
    args = parser.parse_args()
    for backend in args.backend or ["sqlite", "postgresql", "mysql"]:
        for page in args.page or [100, 1000]:
            run(backend, args.rows, page, args.bad)


if __name__ == "__main__":
    main()
