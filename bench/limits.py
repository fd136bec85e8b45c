"""Each pair's limit: the fastest way the databases' own tools or a plain driver loop move the
``orders`` rows, with nothing of highmark (bench/README.md, "pairs.py").

    python bench/limits.py SOURCE TARGET PHASE SRC_URL DST_URL STATE

SOURCE and TARGET are ``sqlite``, ``postgresql`` or ``mariadb``; PHASE 1 creates the target and
copies every row, PHASE 2 copies the rows with ``updated_at`` after the mark that phase 1 left in
the file STATE (the source's greatest ``updated_at`` before it read) and upserts them. SQLite
URLs are file paths; MariaDB URLs are database names on 127.0.0.1:3306 as root.

A limit is never slowed down: each takes the shortest road its pair has (inside the engine when
both tables are in one SQLite file set or one MariaDB server; COPY and LOAD DATA where a server
has them; otherwise a plain fetch/executemany loop with the driver's fastest value types).
"""

from __future__ import annotations

import os
import queue
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

COLS = "id, customer_id, status, amount, note, created_at, updated_at, deleted_at"
NAMES = COLS.split(", ")
BATCH = 50_000
PG_DDL = (
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, status text, "
    "amount numeric(12,2), note text, created_at timestamptz, updated_at timestamptz, "
    "deleted_at timestamptz)"
)
SQLITE_DDL = (
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id BIGINT, status TEXT, "
    "amount NUMERIC(12,2), note TEXT, created_at TIMESTAMP, updated_at TIMESTAMP, "
    "deleted_at TIMESTAMP)"
)
MARIADB_DDL = (
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, status TEXT, "
    "amount DECIMAL(12,2), note TEXT, created_at DATETIME(6), updated_at DATETIME(6), "
    "deleted_at DATETIME(6))"
)
# Timestamps as naive UTC text: what SQLite and MariaDB DATETIME take as they are.
PG_TEXT_SELECT = ", ".join(f"({c} AT TIME ZONE 'UTC')" if c.endswith("_at") else c for c in NAMES)
SETS_SQLITE = ", ".join(f"{c} = excluded.{c}" for c in NAMES[1:])
SETS_PG = ", ".join(f"{c} = EXCLUDED.{c}" for c in NAMES[1:])
SETS_MARIADB = ", ".join(f"{c} = VALUES({c})" for c in NAMES[1:])


# ---------------------------------------------------------------------------- connections


def pg(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, options="-c TimeZone=UTC")


def maria(db: str | None, **kwargs: Any) -> Any:
    import pymysql

    return pymysql.connect(
        host="127.0.0.1", user="root", database=db, init_command="SET time_zone = '+00:00'",
        **kwargs,
    )  # fmt: skip


def maria_text_conv() -> dict[Any, Any]:
    """PyMySQL's conversions, less DATETIME and DECIMAL: those stay text (what the targets take)."""
    from pymysql.constants import FIELD_TYPE
    from pymysql.converters import conversions

    conv = dict(conversions)
    for t in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP, FIELD_TYPE.NEWDECIMAL):
        conv.pop(t, None)
    return conv


# ---------------------------------------------------------------------------- marks


def source_mark(source: str, src: str) -> str:
    query = "SELECT max(updated_at) FROM orders"
    if source == "postgresql":
        with pg(src) as conn:
            value = conn.execute(
                query.replace("max(updated_at)", "max(updated_at)::text")
            ).fetchone()
            return str(value[0]) if value and value[0] else "-infinity"
    if source == "sqlite":
        conn = sqlite3.connect(src)
        try:
            return str(conn.execute(query).fetchone()[0])
        finally:
            conn.close()
    m = maria(src, conv=maria_text_conv())
    try:
        with m.cursor() as cur:
            cur.execute(query)
            return str(cur.fetchone()[0])  # type: ignore[index]
    finally:
        m.close()


def window(source: str, phase: str, state: str) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of the phase and its parameters, in the source's own terms."""
    if phase == "1":
        return "", ()
    low = Path(state).read_text().strip()
    marker = "?" if source == "sqlite" else "%s"
    return f" WHERE updated_at > {marker}", (low,)


# ---------------------------------------------------------------------------- readers


def read_pg(src: str, where: str, params: tuple[Any, ...]) -> Iterator[list[tuple[Any, ...]]]:
    """A server cursor, timestamps and amounts as text (psycopg parses no value)."""
    select = ", ".join(
        f"({c} AT TIME ZONE 'UTC')::text"
        if c.endswith("_at")
        else (f"{c}::text" if c == "amount" else c)
        for c in NAMES
    )
    with pg(src) as conn, conn.cursor(name="limit") as cur:
        cur.itersize = BATCH
        cur.execute(f"SELECT {select} FROM orders{where}", params or None)
        while rows := cur.fetchmany(BATCH):
            yield rows


def read_sqlite(src: str, where: str, params: tuple[Any, ...]) -> Iterator[list[tuple[Any, ...]]]:
    conn = sqlite3.connect(src)
    try:
        cur = conn.execute(f"SELECT {COLS} FROM orders{where}", params)
        while rows := cur.fetchmany(BATCH):
            yield rows
    finally:
        conn.close()


def read_maria(src: str, where: str, params: tuple[Any, ...]) -> Iterator[list[tuple[Any, ...]]]:
    """An unbuffered cursor returning tuples, DATETIME and DECIMAL left as text."""
    import pymysql.cursors

    conn = maria(src, conv=maria_text_conv())
    try:
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(f"SELECT {COLS} FROM orders{where}", params or None)
            while rows := cur.fetchmany(BATCH):
                yield rows
    finally:
        conn.close()


READERS = {"postgresql": read_pg, "sqlite": read_sqlite, "mariadb": read_maria}


def tsv(batches: Iterable[list[tuple[Any, ...]]]) -> Iterator[bytes]:
    """Rows as LOAD DATA's (and COPY's) default text form; this data needs no escaping."""
    for rows in batches:
        yield "".join(
            "\t".join("\\N" if v is None else str(v) for v in row) + "\n" for row in rows
        ).encode()


# ---------------------------------------------------------------------------- writers


@contextmanager
def fifo_from(chunks: Iterable[bytes]) -> Iterator[str]:
    """A named pipe that a thread fills with ``chunks``, for LOAD DATA LOCAL INFILE to read."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows")
        os.mkfifo(path)
        failure: list[BaseException] = []

        def pump() -> None:
            try:
                with open(path, "wb", buffering=1 << 20) as out:
                    for chunk in chunks:
                        out.write(chunk)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        yield path
        thread.join()
        if failure:
            raise failure[0]


def read_ahead(batches: Iterable[T]) -> Iterator[T]:
    """``batches`` read on a thread of their own, two ahead: the source formats and sends the
    next rows while the target writes these. Faster where neither end holds the GIL for long
    (PostgreSQL → SQLite: 1,000,000 rows in 2.8 s against 4.4 s in turns); no faster where
    PyMySQL parses rows in Python or COPY formats them (MariaDB → SQLite or PostgreSQL, SQLite →
    PostgreSQL: measured 2026-12-04), so those limits read in turns."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=2)
    end = object()
    failure: list[BaseException] = []

    def pump() -> None:
        try:
            for batch in batches:
                handoff.put(batch)
        except BaseException as exc:
            failure.append(exc)
        handoff.put(end)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    while (batch := handoff.get()) is not end:
        yield batch
    thread.join()
    if failure:
        raise failure[0]


def pg_copy_text(src: str, where: str, params: tuple[Any, ...]) -> Iterator[bytes]:
    """``COPY … TO STDOUT`` text, timestamps as naive UTC, in 1 MiB pieces."""
    with (
        pg(src) as conn,
        conn.cursor() as cur,
        cur.copy(f"COPY (SELECT {PG_TEXT_SELECT} FROM orders{where}) TO STDOUT", params or None),
    ):
        pgconn, buffer = conn.pgconn, bytearray()
        while (got := pgconn.get_copy_data(0))[0] > 0:
            buffer += got[1]
            if len(buffer) >= 1 << 20:
                yield bytes(buffer)
                buffer.clear()
        while pgconn.get_result() is not None:
            pass
        if buffer:
            yield bytes(buffer)


def into_maria(dst: str, phase: str, chunks: Iterable[bytes]) -> None:
    conn = maria(dst, local_infile=True)
    try:
        with conn.cursor() as cur:
            if phase == "1":
                cur.execute(MARIADB_DDL)
                into = "orders"
            else:
                cur.execute("CREATE TEMPORARY TABLE stage LIKE orders")
                into = "stage"
            with fifo_from(chunks) as path:
                cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {into} ({COLS})")
            if phase != "1":
                cur.execute(
                    f"INSERT INTO orders SELECT * FROM stage ON DUPLICATE KEY UPDATE {SETS_MARIADB}"
                )
        conn.commit()
    finally:
        conn.close()


def into_sqlite(dst: str, phase: str, batches: Iterable[list[tuple[Any, ...]]]) -> None:
    conn = sqlite3.connect(dst)
    try:
        if phase == "1":
            conn.execute(SQLITE_DDL)
            statement = f"INSERT INTO orders ({COLS}) VALUES ({', '.join('?' * len(NAMES))})"
        else:
            statement = (
                f"INSERT INTO orders ({COLS}) VALUES ({', '.join('?' * len(NAMES))}) "
                f"ON CONFLICT (id) DO UPDATE SET {SETS_SQLITE}"
            )
        for rows in batches:
            conn.executemany(statement, rows)
        conn.commit()
    finally:
        conn.close()


def into_pg(dst: str, phase: str, batches: Iterable[list[tuple[Any, ...]]]) -> None:
    with pg(dst) as conn, conn.cursor() as cur:
        if phase == "1":
            cur.execute(PG_DDL)
            into = "orders"
        else:
            cur.execute("CREATE TEMPORARY TABLE stage (LIKE orders)")
            into = "stage"
        with cur.copy(f"COPY {into} ({COLS}) FROM STDIN") as copy:
            for rows in batches:
                for row in rows:
                    copy.write_row(row)
        if phase != "1":
            cur.execute(
                f"INSERT INTO orders SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET {SETS_PG}"
            )


# ---------------------------------------------------------------------------- pairs


def sqlite_sqlite(src: str, dst: str, phase: str, where: str, params: tuple[Any, ...]) -> None:
    """Inside the SQLite engine: ATTACH the source, one INSERT … SELECT."""
    conn = sqlite3.connect(dst)
    try:
        conn.execute("ATTACH DATABASE ? AS s", (src,))
        if phase == "1":
            conn.execute(SQLITE_DDL)
            conn.execute(f"INSERT INTO main.orders SELECT {COLS} FROM s.orders")
        else:
            conn.execute(
                f"INSERT INTO main.orders SELECT {COLS} FROM s.orders{where} "
                f"ON CONFLICT (id) DO UPDATE SET {SETS_SQLITE}",
                params,
            )
        conn.commit()
    finally:
        conn.close()


def maria_maria(src: str, dst: str, phase: str, where: str, params: tuple[Any, ...]) -> None:
    """Inside the server: one INSERT … SELECT across the two databases."""
    conn = maria(dst)
    try:
        with conn.cursor() as cur:
            if phase == "1":
                cur.execute(MARIADB_DDL)
                cur.execute(f"INSERT INTO orders SELECT {COLS} FROM `{src}`.orders")
            else:
                cur.execute(
                    f"INSERT INTO orders SELECT {COLS} FROM `{src}`.orders{where} "
                    f"ON DUPLICATE KEY UPDATE {SETS_MARIADB}",
                    params,
                )
        conn.commit()
    finally:
        conn.close()


def pg_pg(src: str, dst: str, phase: str, state: str) -> None:
    """bench.py's binary COPY limit, as it is."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bench

    sys.argv = ["limit", phase, src, dst, state, bench.ORDERS_DDL]
    exec(bench.LIMIT_SCRIPT, {"__name__": "__main__"})


def main(argv: list[str]) -> None:
    source, target, phase, src, dst, state = argv
    if source == target == "postgresql":
        pg_pg(src, dst, phase, state)
        return
    mark = source_mark(source, src)
    where, params = window(source, phase, state)
    if source == target == "sqlite":
        sqlite_sqlite(src, dst, phase, where, params)
    elif source == target == "mariadb":
        maria_maria(src, dst, phase, where, params)
    elif target == "mariadb":
        chunks = (
            pg_copy_text(src, where, params)
            if source == "postgresql"
            else tsv(READERS[source](src, where, params))
        )
        into_maria(dst, phase, chunks)
    elif target == "sqlite":
        batches = READERS[source](src, where, params)
        into_sqlite(dst, phase, read_ahead(batches) if source == "postgresql" else batches)
    else:
        into_pg(dst, phase, READERS[source](src, where, params))
    Path(state).write_text(mark)


if __name__ == "__main__":
    main(sys.argv[1:])
