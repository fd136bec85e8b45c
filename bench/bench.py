"""The loading benchmark: highmark against the binary-COPY limit and dlt (bench/README.md).

Run it with ``bench/run.sh [N]``. Every contender runs as a whole process (start-up and imports
included), timed from fork to exit, its peak RSS taken from ``wait4``. Phases:

1. initial load of N rows into an empty target database;
2. 1 % updates + 1 % inserts + 0.1 % soft deletes at the source (``updated_at`` bumped), then an
   incremental run;
3. a run with nothing to do.

The contenders run interleaved (each phase runs every contender before the next phase; the order
rotates between repetitions) and every phase checks target == source: the row count and an md5
over all columns in id order. The report goes to ``bench/RESULTS.md``; its hand-written part
(between the ``notes`` markers) is kept when the report is written again.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
HIGHMARK = ROOT / ".venv" / "bin" / "highmark"
PYTHON = ROOT / ".venv" / "bin" / "python"
DLT_VENV = ROOT / "bench" / ".venv-dlt"
DLT_PYTHON = DLT_VENV / "bin" / "python"
PY_SPY = DLT_VENV / "bin" / "py-spy"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
TIME = "/usr/bin/time"
MARIADB = "mysql://root@127.0.0.1:3306"
PREFIX = "hmb_"
NOTES_BEGIN = "<!-- notes: kept when the report is written again -->"
NOTES_END = "<!-- /notes -->"
X = "\N{MULTIPLICATION SIGN}"
PHASES = (1, 2, 3)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
QUIET_SECONDS = 3  # the rest of the machine must stay quiet this long before a run
PHASE_NAMES = {1: "initial load", 2: "delta", 3: "nothing to do"}

COLUMNS = "id, customer_id, status, amount, note, created_at, updated_at, deleted_at"
ORDERS_DDL = (
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, status text, "
    "amount numeric(12,2), note text, created_at timestamptz, updated_at timestamptz, "
    "deleted_at timestamptz)"
)
# Every column cast to the source's type, so that a target with wider types (dlt's numeric)
# compares by value.
VERIFY_SELECT = (
    "SELECT id::bigint, customer_id::bigint, status::text, amount::numeric(12,2), note::text, "
    "created_at::timestamptz, updated_at::timestamptz, deleted_at::timestamptz "
    "FROM {table} ORDER BY id"
)
BASE_TS = "timestamptz '2025-01-01 00:00:00+00'"
DELTA_TS = "timestamptz '2025-09-01 00:00:00+00'"


# ---------------------------------------------------------------------------- the data


def populate_sql(n: int, first: int = 1) -> str:
    """Rows ``first .. first + n - 1``. One row in 20 shares its ``updated_at`` with the row
    before it (5 % of the rows share a timestamp); timestamps step by 1.000123 s."""
    return f"""
        INSERT INTO orders ({COLUMNS})
        SELECT g, (g * 7919) % 100003,
               (ARRAY['new', 'paid', 'shipped', 'delivered', 'returned'])[1 + g % 5],
               ((g * 37) % 1000000) / 100.0,
               CASE WHEN g % 10 = 0 THEN NULL ELSE 'order note ' || md5(g::text) END,
               {BASE_TS} + g * interval '1 second',
               {BASE_TS} + (g - (g % 20 = 0)::int) * interval '1000123 microseconds',
               NULL
        FROM generate_series({first}::bigint, {first + n - 1}) AS g
    """


def delta_sql(n: int) -> list[str]:
    """Phase 2 at the source: 1 % updated, 1 % inserted, 0.1 % soft-deleted, all with a new
    ``updated_at`` (after every phase-1 value, before the source clock)."""
    inserted = max(n // 100, 1)
    return [
        "UPDATE orders SET status = 'refunded', amount = amount + 1, "
        f"updated_at = {DELTA_TS} + id * interval '1 millisecond' WHERE id % 100 = 7",
        f"""INSERT INTO orders ({COLUMNS})
            SELECT g, (g * 7919) % 100003, 'new', ((g * 37) % 1000000) / 100.0,
                   'order note ' || md5(g::text), {DELTA_TS} + g * interval '1 millisecond',
                   {DELTA_TS} + (g - (g % 20 = 0)::int) * interval '1 millisecond', NULL
            FROM generate_series({n + 1}::bigint, {n + inserted}) AS g""",
        f"UPDATE orders SET deleted_at = {DELTA_TS} + interval '1 day', "
        f"updated_at = {DELTA_TS} + id * interval '1 millisecond' + interval '500 microseconds' "
        "WHERE id % 1000 = 3",
    ]


def delta_rows(n: int) -> int:
    """Rows changed by :func:`delta_sql`."""
    return (n + 93) // 100 + max(n // 100, 1) + (n + 997) // 1000


# ---------------------------------------------------------------------------- processes


@dataclass
class Measured:
    seconds: float
    rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    cpu: float = 0.0  # CPU seconds of the process and its children


def measure(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Measured:
    """Run a whole process: wall time from fork to exit, peak RSS of it and its children.

    The peak RSS comes from ``/usr/bin/time``: a child forked straight from this process would
    report this process's own RSS at the fork as its peak whenever that is larger (Linux counts
    the memory a process had before ``exec``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path, rss_path = (Path(tmp) / name for name in ("out", "err", "rss"))
        timed = [TIME, "-f", "%M", "-o", str(rss_path), *argv]
        with out_path.open("wb") as out, err_path.open("wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(timed, stdout=out, stderr=err, env=env, cwd=cwd)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        try:
            rss_kb = int(rss_path.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            rss_kb = 0
        return Measured(
            seconds,
            rss_kb / 1024,
            proc.returncode,
            out_path.read_text(errors="replace"),
            err_path.read_text(errors="replace"),
            usage.ru_utime + usage.ru_stime,
        )


def run(argv: list[str], **kwargs: Any) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-600:]


# ---------------------------------------------------------------------------- the server


class Server:
    """A PostgreSQL server: ``BENCH_PG`` (a URL) or a throwaway cluster made here."""

    def __init__(self, url: str | None) -> None:
        self.given = url
        self.tmp: Path | None = None
        self.data: Path | None = None
        self.base_url = url or ""
        self.databases: set[str] = set()

    def start(self) -> None:
        if self.given:
            log(f"using BENCH_PG ({self.given})")
            return
        self.tmp = Path(tempfile.mkdtemp(prefix="hm-bench-pg-"))
        self.data = self.tmp / "data"
        as_user: list[str] = []
        if os.geteuid() == 0:
            # initdb refuses to run as root: the cluster belongs to the postgres user.
            shutil.chown(self.tmp, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        port = free_port()
        log(f"initdb into {self.data}, port {port}")
        run(
            [
                *as_user,
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        options = f"-p {port} -k {self.tmp} -c listen_addresses=127.0.0.1"
        run(
            [
                *as_user,
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.tmp / "server.log"),
                "-o",
                options,
                "-w",
                "start",
            ]
        )
        self.base_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.as_user = as_user

    def stop(self) -> None:
        with contextlib.suppress(Exception), self.admin() as conn:
            for db in sorted(self.databases):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if self.data is not None and self.tmp is not None:
            with contextlib.suppress(Exception):
                run(
                    [
                        *self.as_user,
                        str(PG_BIN / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ]
                )
            shutil.rmtree(self.tmp, ignore_errors=True)
            log("throwaway cluster stopped and removed")

    def postmaster_pid(self) -> int | None:
        if self.data is None:
            return None
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def log_file(self) -> Path | None:
        return self.tmp / "server.log" if self.tmp else None

    def url(self, db: str) -> str:
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path="/" + db))

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.base_url, autocommit=True)

    def connect(self, db: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(db), autocommit=True, options="-c TimeZone=UTC")

    def create(self, db: str, template: str | None = None) -> str:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            if template:
                conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{template}" STRATEGY FILE_COPY')
            else:
                conn.execute(f'CREATE DATABASE "{db}"')
        self.databases.add(db)
        return self.url(db)

    def drop(self, db: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        self.databases.discard(db)

    def checkpoint(self) -> None:
        with self.admin() as conn:
            conn.execute("CHECKPOINT")

    def settings(self) -> dict[str, str]:
        names = [
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "wal_level",
            "wal_buffers",
            "wal_compression",
            "max_wal_size",
            "checkpoint_timeout",
            "shared_buffers",
            "work_mem",
            "maintenance_work_mem",
            "effective_cache_size",
            "max_parallel_workers_per_gather",
            "jit",
        ]
        with self.admin() as conn:
            return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def _stat_fields(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` (its reaped children included) and its live children: a server's
    postmaster and backends."""
    fields = _stat_fields(root)
    if not fields:
        return 0.0
    total = sum(int(x) for x in fields[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            child = _stat_fields(int(entry.name))
            if child and child[1] == str(root):
                total += int(child[11]) + int(child[12])
    return total / CLOCK_TICKS


class Quiet:
    """The rest of the machine (other sessions): wait for it before a run, measure it during one.
    "Ours" is the measured process and its children, and the benchmark's PostgreSQL server."""

    def __init__(self, server: Server, limit: float, wait: float) -> None:
        self.server = server
        self.limit = limit
        self.wait_max = wait
        self.waited = 0.0
        self.gave_up = 0

    def ours(self) -> float:
        pid = self.server.postmaster_pid()
        return tree_cpu(pid) if pid else 0.0

    def wait(self) -> None:
        if self.wait_max <= 0:
            return
        start = time.monotonic()
        quiet_seconds = 0
        while True:
            busy0, ours0 = machine_cpu(), self.ours()
            time.sleep(1.0)
            others = machine_cpu() - busy0 - (self.ours() - ours0)
            quiet_seconds = quiet_seconds + 1 if others < self.limit else 0
            if quiet_seconds >= QUIET_SECONDS:
                break
            if time.monotonic() - start > self.wait_max:
                self.gave_up += 1
                log(f"still {others:.1f} cores busy with other work: measuring anyway")
                break
        self.waited += time.monotonic() - start

    def begin(self) -> tuple[float, float]:
        return machine_cpu(), self.ours()

    def others(self, begun: tuple[float, float], m: Measured) -> float:
        """Cores the rest of the machine used, on average, during the run ``m``."""
        busy = machine_cpu() - begun[0]
        ours = self.ours() - begun[1] + m.cpu
        return max(busy - ours, 0.0) / m.seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_source(server: Server, db: str, n: int) -> None:
    """The source table of ``n`` rows, indexed and vacuumed (visibility map set)."""
    server.create(db)
    with server.connect(db) as conn:
        conn.execute(ORDERS_DDL)
        step = 1_000_000
        for first in range(1, n + 1, step):
            conn.execute(populate_sql(min(step, n - first + 1), first))
        conn.execute("CREATE INDEX orders_updated_at_id ON orders (updated_at, id)")
        conn.execute("VACUUM ANALYZE orders")


def apply_delta(server: Server, db: str, n: int) -> None:
    with server.connect(db) as conn:
        with conn.transaction():
            for statement in delta_sql(n):
                conn.execute(statement)
        conn.execute("VACUUM ANALYZE orders")


# ---------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Digest:
    rows: int
    md5: str


def pg_digest(server: Server, db: str, table: str = "orders") -> Digest:
    """COPY of every column (cast to the source's types) in id order, md5'd here."""
    md5 = hashlib.md5()
    rows = 0
    statement = f"COPY ({VERIFY_SELECT.format(table=table)}) TO STDOUT"
    with server.connect(db) as conn, conn.cursor() as cur, cur.copy(statement) as copy:
        buffer = bytearray()
        for data in copy:
            buffer += data
            if len(buffer) >= 1 << 20:
                md5.update(buffer)
                rows += buffer.count(b"\n")
                buffer.clear()
        md5.update(buffer)
        rows += buffer.count(b"\n")
    return Digest(rows, md5.hexdigest())


CENT = Decimal("0.01")


def _canonical_ts(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))


def canonical_digest(rows: Iterable[tuple[Any, ...]]) -> Digest:
    """The same rows read from any database, in one text form (timestamps in UTC)."""
    md5 = hashlib.md5()
    count = 0
    for row in rows:
        parts = []
        for i, value in enumerate(row):
            if value is None:
                parts.append("\\N")
            elif i == 3:
                parts.append(str(Decimal(str(value)).quantize(CENT)))
            elif i >= 5:
                parts.append(_canonical_ts(value))
            else:
                parts.append(str(value))
        md5.update(("\t".join(parts) + "\n").encode())
        count += 1
    return Digest(count, md5.hexdigest())


def pg_rows(server: Server, db: str) -> Iterator[tuple[Any, ...]]:
    with server.connect(db) as conn, conn.transaction(), conn.cursor(name="digest") as cur:
        cur.itersize = 20_000
        cur.execute(f"SELECT {COLUMNS} FROM orders ORDER BY id")
        yield from cur


def sqlite_rows(path: Path) -> Iterator[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        yield from conn.execute(f"SELECT {COLUMNS} FROM orders ORDER BY id")
    finally:
        conn.close()


def mariadb_rows(db: str) -> Iterator[tuple[Any, ...]]:
    import pymysql
    import pymysql.cursors

    conn = pymysql.connect(host="127.0.0.1", user="root", database=db)
    try:
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(f"SELECT {COLUMNS} FROM orders ORDER BY id")
            yield from cur
    finally:
        conn.close()


def mariadb_version() -> str:
    import pymysql

    try:
        conn = pymysql.connect(host="127.0.0.1", user="root")
    except Exception as exc:
        return f"unreachable ({exc})"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            return str(cur.fetchone()[0])  # type: ignore[index]
    finally:
        conn.close()


def mariadb(statement: str) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


# ---------------------------------------------------------------------------- contenders

LIMIT_SCRIPT = r"""
import sys
import psycopg

phase, src, dst, state = sys.argv[1:5]
COLS = "id, customer_id, status, amount, note, created_at, updated_at, deleted_at"
with psycopg.connect(src) as s, psycopg.connect(dst) as d:
    s.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    mark = s.execute("SELECT max(updated_at) FROM orders").fetchone()[0]
    if phase == "1":
        d.execute(sys.argv[5])
        query, params, into = f"SELECT {COLS} FROM orders", None, "orders"
    else:
        with open(state) as f:
            low = f.read().strip()
        d.execute("CREATE TEMPORARY TABLE stage (LIKE orders)")
        query, params, into = f"SELECT {COLS} FROM orders WHERE updated_at > %s", (low,), "stage"
    with (
        s.cursor() as sc,
        d.cursor() as dc,
        sc.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)", params) as out,
        dc.copy(f"COPY {into} ({COLS}) FROM STDIN (FORMAT binary)") as into_copy,
    ):
        # libpq's rows, straight from its buffer: psycopg's `for data in out` would cost ~3 µs
        # of Python a row, and the limit must not be slower than what it measures.
        pg, buffer = s.pgconn, bytearray()
        while (got := pg.get_copy_data(0))[0] > 0:
            buffer += got[1]
            if len(buffer) >= 1 << 20:
                into_copy.write(bytes(buffer))
                buffer.clear()
        while pg.get_result() is not None:
            pass  # the end of the COPY (its command result)
        if buffer:
            into_copy.write(bytes(buffer))
    if phase != "1":
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLS.split(", ")[1:])
        d.execute(f"INSERT INTO orders SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET {sets}")
    d.commit()
with open(state, "w") as f:
    f.write(mark.isoformat() if mark else "-infinity")
"""

DLT_SCRIPT = r"""
import sys

mode, src, dst, pipelines_dir = sys.argv[1:5]
import dlt
from dlt.sources.sql_database import sql_database

source = sql_database(
    credentials=src,
    table_names=["orders"],
    backend="connectorx" if mode == "fast" else "sqlalchemy",
)
source.orders.apply_hints(
    primary_key="id",
    write_disposition="merge",
    incremental=dlt.sources.incremental("updated_at"),
)
pipeline = dlt.pipeline(
    pipeline_name="bench_orders",
    destination=dlt.destinations.postgres(credentials=dst),
    dataset_name="bench",
    pipelines_dir=pipelines_dir,
)
info = pipeline.run(source, loader_file_format="parquet" if mode == "fast" else None)
info.raise_on_failed_jobs()
if mode == "fast":
    formats = {
        job.job_file_info.file_format
        for package in info.load_packages
        for job in package.jobs["completed_jobs"]
    }
    print("file formats:", sorted(formats))
"""

PROJECT_TEMPLATE = """\
{control}connections:
  src: {src}
  dst: {dst}
jobs:
  orders_sync:
    load_type: incremental
    source: {{connection: src, table: orders}}
    target: {{connection: dst, table: orders}}
    primary_key: [id]
    watermark: {{column: updated_at, type: timestamp, tiebreaker: id}}
    soft_delete: {{column: deleted_at, mode: mark}}
    batch_size: {batch_size}
    parallelism: {parallelism}
"""


@dataclass
class Context:
    server: Server
    work: Path
    rows: int
    source_db: str = PREFIX + "src"
    quiet: Quiet | None = None


class Contender:
    name = ""
    label = ""
    phases: tuple[int, ...] = PHASES
    target_table = "orders"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rep = 0

    def unavailable(self) -> str | None:
        return None

    @property
    def target_db(self) -> str:
        return f"{PREFIX}t_{re.sub(r'[^a-z0-9]+', '_', self.name)}_{self.rep}"

    @property
    def dir(self) -> Path:
        return self.ctx.work / f"{self.name}-{self.rep}"

    def setup(self, rep: int) -> None:
        self.rep = rep
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.ctx.server.create(self.target_db)

    def teardown(self) -> None:
        self.ctx.server.drop(self.target_db)
        shutil.rmtree(self.dir, ignore_errors=True)

    def argv(self, phase: int) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def digest(self) -> Digest:
        return pg_digest(self.ctx.server, self.target_db, self.target_table)

    def src_url(self) -> str:
        return self.ctx.server.url(self.ctx.source_db)


class CopyLimit(Contender):
    name = "copy"
    label = "binary COPY piped by a small psycopg 3 script (the limit)"

    def argv(self, phase: int) -> list[str]:
        state = str(self.dir / "mark")
        dst = self.ctx.server.url(self.target_db)
        return [str(PYTHON), "-c", LIMIT_SCRIPT, str(phase), self.src_url(), dst, state, ORDERS_DDL]


class PsqlPipe(Contender):
    name = "psql"
    label = "`psql … COPY TO STDOUT (FORMAT binary) | psql … COPY FROM STDIN` (no Python)"
    phases = (1,)

    def argv(self, phase: int) -> list[str]:
        script = (
            'set -euo pipefail; psql -X -q -v ON_ERROR_STOP=1 "$2" -c "$3"; '
            'psql -X -q -v ON_ERROR_STOP=1 "$1" -c "COPY (SELECT $4 FROM orders) TO STDOUT '
            '(FORMAT binary)" | psql -X -q -v ON_ERROR_STOP=1 "$2" -c "COPY orders ($4) FROM '
            'STDIN (FORMAT binary)"'
        )
        dst = self.ctx.server.url(self.target_db)
        return ["bash", "-c", script, "_", self.src_url(), dst, ORDERS_DDL, COLUMNS]


class Highmark(Contender):
    def __init__(
        self,
        ctx: Context,
        batch_size: int,
        control: str = "sqlite",
        *,
        migrated: bool = False,
        parallelism: int = 1,
    ) -> None:
        super().__init__(ctx)
        self.batch_size = batch_size
        self.control = control
        self.migrated = migrated
        self.parallelism = parallelism
        self.name = f"highmark-{batch_size}"
        self.label = f"highmark, batch_size {batch_size:,}"
        if parallelism > 1:
            self.name += f"-p{parallelism}"
            self.label += f", parallelism {parallelism}"
        if control != "sqlite":
            self.name += "-pgcontrol"
            self.label += ", control store on PostgreSQL"
        if migrated:
            self.name += "-migrated"
            self.label += ", control store made beforehand (`highmark migrate`, not timed)"

    @property
    def control_db(self) -> str:
        return f"{PREFIX}ctl_{self.rep}"

    @property
    def project(self) -> Path:
        return self.dir / "highmark.yml"

    def setup(self, rep: int) -> None:
        super().setup(rep)
        control = ""
        if self.control == "postgresql":
            control = f"control: {self.ctx.server.create(self.control_db)}\n"
        self.project.write_text(
            PROJECT_TEMPLATE.format(
                control=control,
                src=self.src_url(),
                dst=self.ctx.server.url(self.target_db),
                batch_size=self.batch_size,
                parallelism=self.parallelism,
            )
        )
        if self.migrated:
            run([str(HIGHMARK), "--project", str(self.project), "migrate"])

    def teardown(self) -> None:
        super().teardown()
        if self.control == "postgresql":
            self.ctx.server.drop(self.control_db)

    def argv(self, phase: int) -> list[str]:
        return [str(HIGHMARK), "--project", str(self.project), "run", "orders_sync"]


class Dlt(Contender):
    target_table = "bench.orders"

    def __init__(self, ctx: Context, mode: str) -> None:
        super().__init__(ctx)
        self.mode = mode
        if mode == "fast":
            self.name = "dlt-fast"
            self.label = "dlt fastest: connectorx backend, parquet loaded through ADBC, merge"
        else:
            self.name = "dlt-default"
            self.label = "dlt defaults: sqlalchemy backend, insert_values, merge"

    def unavailable(self) -> str | None:
        if not DLT_PYTHON.exists():
            return f"{DLT_PYTHON} is missing (bench/run.sh makes it)"
        modules = ["dlt", "sqlalchemy", "psycopg", "psycopg2"]
        if self.mode == "fast":
            modules += ["connectorx", "pyarrow", "adbc_driver_postgresql"]
        probe = subprocess.run(
            [str(DLT_PYTHON), "-c", "import " + ", ".join(modules)],
            capture_output=True,
            text=True,
            check=False,
        )
        return None if probe.returncode == 0 else tail(probe.stderr, 1)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            RUNTIME__DLTHUB_TELEMETRY="false",
            DLT_DATA_DIR=str(self.dir / "dlt-data"),
            DLT_PROJECT_DIR=str(self.dir),
        )
        return env

    def argv(self, phase: int) -> list[str]:
        # dlt's postgres destination insists on a password; trust authentication ignores it.
        src = with_password(self.src_url())
        dst = with_password(self.ctx.server.url(self.target_db))
        pipelines = str(self.dir / "pipelines")
        return [str(DLT_PYTHON), "-c", DLT_SCRIPT, self.mode, src, dst, pipelines]


def with_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace("@", ":bench@", 1)))


# ---------------------------------------------------------------------------- results


@dataclass
class Result:
    section: str
    contender: str
    phase: int
    rep: int
    seconds: float
    rss_mb: float
    ok: bool
    error: str = ""
    rows: int = 0
    load: float = 0.0
    others: float = -1.0  # cores used by other work during the run (-1: not measured)


@dataclass
class Report:
    rows: int
    command: str
    started: str
    results: list[Result] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    scale_rows: int = 0
    retried: list[dict[str, Any]] = field(default_factory=list)  # disturbed runs, measured again

    def add(self, result: Result) -> None:
        self.results.append(result)
        status = "ok" if result.ok else f"FAILED: {result.error}"
        log(
            f"{result.section} {result.contender} phase {result.phase} rep {result.rep}: "
            f"{result.seconds:.2f} s, {result.rss_mb:.0f} MB, others {result.others:.2f} cores, "
            f"{status}"
        )


def run_phase(
    report: Report,
    section: str,
    contender: Contender,
    phase: int,
    expected: Digest,
    rows: int,
    digest: Callable[[], Digest] | None = None,
) -> bool:
    quiet = contender.ctx.quiet
    begun = (0.0, 0.0)
    if quiet:
        quiet.wait()
        begun = quiet.begin()
    load = os.getloadavg()[0]
    m = measure(contender.argv(phase), env=contender.env(), cwd=contender.dir)
    others = quiet.others(begun, m) if quiet and quiet.ours() else -1.0
    ok, error = m.returncode == 0, ""
    if not ok:
        error = f"exit {m.returncode}: {tail(m.stderr or m.stdout)}"
    else:
        try:
            got = (digest or contender.digest)()
        except Exception as exc:  # a missing table is a failed load
            got, error = Digest(-1, ""), f"verification: {type(exc).__name__}: {exc}"
        if got != expected:
            ok = False
            error = error or (
                f"target != source: {got.rows} rows, md5 {got.md5[:8]} "
                f"(expected {expected.rows}, {expected.md5[:8]})"
            )
    report.add(
        Result(
            section,
            contender.name,
            phase,
            contender.rep,
            m.seconds,
            m.rss_mb,
            ok,
            error,
            rows,
            load,
            round(others, 2),
        )
    )
    return ok


RETRIES = 2  # runs disturbed by other work are measured again, at most this many times
DISTURBED_CORES = 0.3


def disturbed(report: Report, c: Contender, phase: int, attempt: int) -> bool:
    """Was the run just made disturbed by other work, and can it be measured again? Phase 1
    can (into a new target), phase 3 can (it changes nothing); phase 2 cannot (the source's
    change is applied once), nor dlt's defaults (a minute per load; far from every target)."""
    last = report.results[-1]
    if last.others <= DISTURBED_CORES or phase == 2 or c.name == "dlt-default":
        return False
    if attempt == RETRIES:
        return False
    report.results.pop()
    report.retried.append(asdict(last))
    log(f"{c.name} phase {phase}: other work used {last.others:.2f} cores meanwhile: again")
    return True


def wait_for_quiet(max_load: float, wait: float) -> float:
    """Wait (up to ``wait`` s) for the 1-minute load average to drop under ``max_load``."""
    deadline = time.monotonic() + wait
    while True:
        load = os.getloadavg()[0]
        if load <= max_load or time.monotonic() > deadline:
            return load
        log(f"load average {load:.2f} > {max_load}: waiting")
        time.sleep(20)


# ---------------------------------------------------------------------------- sections


def main_section(ctx: Context, report: Report, contenders: list[Contender], repeat: int) -> None:
    server, n = ctx.server, ctx.rows
    base = PREFIX + "src_base"
    log(f"building the source: {n:,} rows")
    build_source(server, base, n)
    expected = {1: pg_digest(server, base)}
    runnable = []
    for c in contenders:
        report.labels[c.name] = c.label
        reason = c.unavailable()
        if reason:
            report.unavailable[c.name] = reason
            log(f"{c.name} could not run: {reason}")
        else:
            runnable.append(c)
    rows = {1: n, 2: delta_rows(n), 3: 0}
    for rep in range(repeat):
        server.create(ctx.source_db, template=base)
        shift = rep % len(runnable)
        order = runnable[shift:] + runnable[:shift]
        failed: set[str] = set()
        for c in order:
            c.setup(rep)
        report.environment.setdefault("loads", []).append(round(os.getloadavg()[0], 2))
        for phase in PHASES:
            if phase == 2:
                apply_delta(server, ctx.source_db, n)
                expected.setdefault(2, pg_digest(server, ctx.source_db))
                expected[3] = expected[2]
            for c in order:
                if phase not in c.phases or c.name in failed:
                    continue
                for attempt in range(RETRIES + 1):
                    server.checkpoint()
                    if not run_phase(report, "pg", c, phase, expected[phase], rows[phase]):
                        failed.add(c.name)
                        break
                    if not disturbed(report, c, phase, attempt):
                        break
                    if phase == 1:  # a first load again: into a new, empty target
                        c.teardown()
                        c.setup(rep)
        for c in order:
            c.teardown()
    server.drop(ctx.source_db)


def cross_section(ctx: Context, report: Report, batch_size: int, repeat: int) -> None:
    """highmark alone into (and out of) other databases: SQLite→SQLite, PostgreSQL→SQLite,
    PostgreSQL→MariaDB, phases 1 and 2."""
    server, n = ctx.server, ctx.rows
    base = PREFIX + "src_base"
    if base not in server.databases:
        build_source(server, base, n)
    server.create(ctx.source_db, template=base)
    log("canonical digests of the source")
    expected = {1: canonical_digest(pg_rows(server, ctx.source_db))}
    sqlite_base = ctx.work / "source-base.db"
    copy_to_sqlite(server, ctx.source_db, sqlite_base, create=True)
    assert canonical_digest(sqlite_rows(sqlite_base)) == expected[1], "SQLite source differs"
    apply_delta(server, ctx.source_db, n)
    expected[2] = canonical_digest(pg_rows(server, ctx.source_db))
    changed = changed_rows(server, ctx.source_db)
    sqlite_delta = ctx.work / "source-delta.db"
    shutil.copy(sqlite_base, sqlite_delta)
    upsert_sqlite(sqlite_delta, changed)
    assert canonical_digest(sqlite_rows(sqlite_delta)) == expected[2], "SQLite delta differs"
    server.drop(ctx.source_db)

    cases = [("sqlite", "sqlite"), ("postgresql", "sqlite"), ("postgresql", "mariadb")]
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}
    rows = {1: n, 2: delta_rows(n)}
    for rep in range(repeat):
        server.create(ctx.source_db, template=base)
        shutil.copy(sqlite_base, ctx.work / "source.db")
        contenders = [CrossHighmark(ctx, batch_size, s, t) for s, t in cases]
        shift = rep % len(contenders)
        order = contenders[shift:] + contenders[:shift]
        for c in order:
            report.labels[c.name] = f"{names[c.source]} → {names[c.target]}"
            c.setup(rep)
        failed: set[str] = set()
        for phase in (1, 2):
            if phase == 2:
                apply_delta(server, ctx.source_db, n)
                shutil.copy(sqlite_delta, ctx.work / "source.db")
            for c in order:
                if c.name in failed:
                    continue
                if not run_phase(
                    report, "cross", c, phase, expected[phase], rows[phase], digest=c.canonical
                ):
                    failed.add(c.name)
        for c in order:
            c.teardown()
        server.drop(ctx.source_db)


class CrossHighmark(Highmark):
    def __init__(self, ctx: Context, batch_size: int, source: str, target: str) -> None:
        super().__init__(ctx, batch_size)
        self.source, self.target = source, target
        self.name = f"{source}-{target}"

    @property
    def mariadb_db(self) -> str:
        return f"{PREFIX}t_{self.rep}"

    def setup(self, rep: int) -> None:
        self.rep = rep
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        if self.source == "sqlite":
            src = f"sqlite:///{self.ctx.work / 'source.db'}"
        else:
            src = self.src_url()
        if self.target == "sqlite":
            dst = f"sqlite:///{self.dir / 'target.db'}"
        else:
            mariadb(f"DROP DATABASE IF EXISTS {self.mariadb_db}")
            mariadb(f"CREATE DATABASE {self.mariadb_db}")
            dst = f"{MARIADB}/{self.mariadb_db}"
        self.project.write_text(
            PROJECT_TEMPLATE.format(
                control="", src=src, dst=dst, batch_size=self.batch_size, parallelism=1
            )
        )

    def teardown(self) -> None:
        if self.target == "mariadb":
            mariadb(f"DROP DATABASE IF EXISTS {self.mariadb_db}")
        shutil.rmtree(self.dir, ignore_errors=True)

    def canonical(self) -> Digest:
        if self.target == "sqlite":
            return canonical_digest(sqlite_rows(self.dir / "target.db"))
        return canonical_digest(mariadb_rows(self.mariadb_db))


SQLITE_DDL = (
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id BIGINT, status TEXT, "
    "amount NUMERIC(12,2), note TEXT, created_at TIMESTAMP, updated_at TIMESTAMP, "
    "deleted_at TIMESTAMP)"
)


def _sqlite_values(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Timestamps as highmark and most applications write them in SQLite: naive UTC text."""
    out = list(row)
    out[3] = str(out[3])
    for i in (5, 6, 7):
        if out[i] is not None:
            out[i] = out[i].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return tuple(out)


def copy_to_sqlite(server: Server, db: str, path: Path, *, create: bool) -> None:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute(SQLITE_DDL)
        conn.execute("CREATE INDEX orders_updated_at_id ON orders (updated_at, id)")
        batch: list[tuple[Any, ...]] = []
        for row in pg_rows(server, db):
            batch.append(_sqlite_values(row))
            if len(batch) >= 50_000:
                conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
                batch.clear()
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
        conn.commit()
        conn.execute("ANALYZE")
    finally:
        conn.close()


def changed_rows(server: Server, db: str) -> list[tuple[Any, ...]]:
    with server.connect(db) as conn:
        return conn.execute(
            f"SELECT {COLUMNS} FROM orders WHERE updated_at >= {DELTA_TS} ORDER BY id"
        ).fetchall()


def upsert_sqlite(path: Path, rows: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executemany(
            "INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [_sqlite_values(r) for r in rows],
        )
        conn.commit()
    finally:
        conn.close()


def scale_section(ctx: Context, report: Report, batch_size: int, scale_rows: int) -> None:
    """Peak RSS of highmark's phase 1 at N and at scale_rows (PostgreSQL → PostgreSQL), with the
    COPY limit at both sizes for comparison; measured once per size."""
    server = ctx.server
    report.scale_rows = scale_rows
    for rows in (ctx.rows, scale_rows):
        db = f"{PREFIX}src_scale"
        log(f"scale: building a source of {rows:,} rows")
        build_source(server, db, rows)
        expected = pg_digest(server, db)
        sub = Context(server, ctx.work, rows, source_db=db, quiet=ctx.quiet)
        for c in (Highmark(sub, batch_size), CopyLimit(sub)):
            c.name = f"{c.name}@{rows}"
            report.labels[c.name] = c.label
            c.setup(0)
            server.checkpoint()
            run_phase(report, "scale", c, 1, expected, rows)
            c.teardown()
        server.drop(db)


# ---------------------------------------------------------------------------- profile


def profile_section(ctx: Context, report: Report, batch_size: int) -> None:
    """Where highmark's time goes, phase by phase, with the server logging every statement's
    duration: py-spy (wall clock, idle included, main thread) for phases 1 and 2, cProfile for
    phase 3 (py-spy attaches too late to see a short process's start-up), and a run with
    ``-X importtime`` for the imports."""
    server, n = ctx.server, ctx.rows
    base = PREFIX + "src_base"
    if base not in server.databases:
        build_source(server, base, n)
    server.create(ctx.source_db, template=base)
    hm = Highmark(ctx, batch_size)
    hm.name = "profile"
    hm.setup(0)
    spy = PY_SPY.exists()
    out: dict[str, Any] = {"py-spy": spy, "batch_size": batch_size}
    expected = {1: pg_digest(server, base)}
    for phase in PHASES:
        if phase == 2:
            apply_delta(server, ctx.source_db, n)
            expected[2] = pg_digest(server, ctx.source_db)
            expected[3] = expected[2]
        server.checkpoint()
        raw = hm.dir / f"phase{phase}.prof"
        tool = "py-spy" if spy and phase < 3 else "cProfile"
        if tool == "py-spy":
            record = ["record", "--idle", "--threads", "--rate", "250", "--format", "raw"]
            argv = [str(PY_SPY), *record, "-o", str(raw), "--", *hm.argv(phase)]
        else:
            argv = [str(PYTHON), "-m", "cProfile", "-o", str(raw), "-m", "highmark"]
            argv += hm.argv(phase)[1:]
        statements = server_log_mark(server)
        log_statements(server, [ctx.source_db, hm.target_db], on=True)
        m = measure(argv, env=hm.env(), cwd=hm.dir)
        log_statements(server, [ctx.source_db, hm.target_db], on=False)
        ok = m.returncode == 0 and hm.digest() == expected[phase]
        entry: dict[str, Any] = {"seconds": round(m.seconds, 3), "ok": ok, "tool": tool}
        if not ok:
            entry["error"] = tail(m.stderr + m.stdout)
        if raw.exists():
            summary = summarize_py_spy(raw.read_text()) if tool == "py-spy" else None
            entry.update(summary or summarize_cprofile(raw))
        entry["server"] = server_statements(server, statements)
        out[f"phase{phase}"] = entry
        log(f"profile phase {phase}: {m.seconds:.2f} s ({'ok' if ok else 'FAILED'})")
    # Imports of a run with nothing to do (still phase 3: the window is empty).
    m = measure(
        [str(PYTHON), "-X", "importtime", "-m", "highmark", *hm.argv(3)[1:]],
        env=hm.env(),
        cwd=hm.dir,
    )
    out["imports"] = summarize_importtime(m.stderr)
    out["phase3_import_run_seconds"] = round(m.seconds, 3)
    report.profile = out
    hm.teardown()
    server.drop(ctx.source_db)


def log_statements(server: Server, databases: list[str], *, on: bool) -> None:
    with server.admin() as conn:
        for db in databases:
            if on:
                conn.execute(f'ALTER DATABASE "{db}" SET log_min_duration_statement = 0')
            else:
                conn.execute(f'ALTER DATABASE "{db}" RESET log_min_duration_statement')


def server_log_mark(server: Server) -> int:
    path = server.log_file
    return path.stat().st_size if path and path.exists() else -1


DURATION = re.compile(r"duration: ([0-9.]+) ms\s+(?:(parse|bind|execute) [^:]*: |statement: )?(.*)")


def server_statements(server: Server, offset: int) -> list[tuple[str, int, float]]:
    """Statement durations the server logged since ``offset``, grouped by statement shape."""
    path = server.log_file
    if offset < 0 or path is None:
        return []
    with path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    # A log entry's continuation lines (a statement's later lines) start with a tab.
    entries = re.split(r"\n(?!\t)", text)
    groups: dict[str, list[float]] = defaultdict(list)
    for entry in entries:
        line = entry.replace("\n\t", " ")
        found = DURATION.search(line)
        if not found:
            continue
        ms, step, statement = float(found.group(1)), found.group(2), found.group(3)
        shape = re.sub(r"\s+", " ", statement).strip()
        shape = re.sub(r"'[^']*'|\$\d+|\b\d+\b", "?", shape)[:110]
        groups[(f"[{step}] " if step and step != "execute" else "") + shape].append(ms)
    ranked = sorted(groups.items(), key=lambda kv: -sum(kv[1]))
    return [(shape, len(v), round(sum(v) / 1000, 3)) for shape, v in ranked[:12]]


FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    found = FRAME.match(frame)
    if not found:
        return frame
    func, path = found.groups()
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{func} ({path})"


def summarize_py_spy(raw: str) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    attributed: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        # The main thread does the work; the lease and timeout threads only wait.
        if not frames or not frames[0].endswith(": MainThread"):
            continue
        frames = frames[1:]
        total += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
        attributed[_attribute(frames)] += count
    share = lambda c: round(100 * c / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "inclusive": [(name, share(c)) for name, c in inclusive.most_common(40)],
        "self": [(name, share(c)) for name, c in own.most_common(15)],
        "highmark": [(name, share(c)) for name, c in attributed.most_common(25)],
    }


def _attribute(frames: list[str]) -> str:
    """Who a sample is for: imports (whoever triggered them), or the innermost highmark frame
    (what highmark was doing, the libraries' work below it included)."""
    if any(f.startswith("_find_and_load ") for f in frames):
        return "(importing modules)"
    for frame in reversed(frames):
        if "(highmark/" in frame:
            return frame
    return frames[-1] if frames else "(no Python frame: interpreter start-up or exit)"


def summarize_cprofile(path: Path) -> dict[str, Any]:
    import pstats

    stats: Any = pstats.Stats(str(path))
    total = max(stats.total_tt, 1e-9)
    rows = []
    for (file, _line, func), (_cc, _nc, tt, ct, _callers) in stats.stats.items():
        rows.append((_frame_name(f"{func} ({file})"), ct, tt))
    inclusive = sorted(rows, key=lambda r: -r[1])[:40]
    own = sorted(rows, key=lambda r: -r[2])[:15]
    ours = [r for r in rows if "(highmark/" in r[0] and not r[0].startswith("<module>")]
    imports = max((ct for name, ct, _ in rows if name.startswith("_find_and_load ")), default=0)
    share = lambda seconds: round(100 * seconds / total, 1)  # noqa: E731
    return {
        "samples": 0,
        "total_seconds": round(total, 3),
        "inclusive": [(name, share(ct)) for name, ct, _ in inclusive],
        "self": [(name, share(tt)) for name, _, tt in own],
        "highmark": [
            ("(importing modules)", share(imports)),
            *((name, share(ct)) for name, ct, _ in sorted(ours, key=lambda r: -r[1])[:24]),
        ],
    }


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def summarize_importtime(stderr: str) -> dict[str, Any]:
    """Self time of imports summed by top-level package; the top-level imports' cumulative."""
    by_package: Counter[str] = Counter()
    top: list[tuple[str, float]] = []
    total = 0
    for line in stderr.splitlines():
        found = IMPORT_LINE.match(line)
        if not found:
            continue
        own, cumulative, indent, name = found.groups()
        by_package[name.split(".")[0]] += int(own)
        total += int(own)
        if len(indent) == 1:
            top.append((name, int(cumulative) / 1000))
    return {
        "total_ms": round(total / 1000, 1),
        "by_package": [(p, round(us / 1000, 1)) for p, us in by_package.most_common(15)],
        "top_level": sorted(top, key=lambda t: -t[1])[:12],
    }


# ---------------------------------------------------------------------------- environment


def environment(server: Server) -> dict[str, Any]:
    def first(cmd: list[str]) -> str:
        try:
            return run(cmd).strip().splitlines()[0]
        except Exception as exc:
            return f"unknown ({exc})"

    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    commit = first(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"])
    dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "highmark"]).strip()
    versions = {
        "python": platform.python_version(),
        "highmark": commit + (" + uncommitted changes in highmark/" if dirty else ""),
        "psycopg": psycopg.__version__,
        "sqlalchemy": first(
            [str(PYTHON), "-c", "import sqlalchemy; print(sqlalchemy.__version__)"]
        ),
        "mariadb": mariadb_version(),
    }
    if DLT_PYTHON.exists():
        probe = (
            "import importlib.metadata as m\n"
            "for p in ['dlt', 'connectorx', 'pyarrow', 'adbc-driver-postgresql', 'SQLAlchemy',"
            " 'psycopg2-binary']:\n"
            "    try: print(p, m.version(p))\n"
            "    except Exception: print(p, 'missing')\n"
        )
        for line in run([str(DLT_PYTHON), "-c", probe]).splitlines():
            name, version = line.split(" ", 1)
            versions[f"{name} (dlt venv)"] = version
    return {
        "cores": os.cpu_count(),
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "versions": versions,
        "pg_settings": server.settings(),
        "server": "BENCH_PG" if server.given else "a throwaway cluster (initdb defaults)",
    }


# ---------------------------------------------------------------------------- the report


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cell_time(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


class Summary:
    def __init__(self, report: Report, section: str) -> None:
        self.by: dict[tuple[str, int], list[Result]] = defaultdict(list)
        for r in report.results:
            if r.section == section:
                self.by[(r.contender, r.phase)].append(r)

    def results(self, name: str, phase: int) -> list[Result]:
        return self.by.get((name, phase), [])

    def ok(self, name: str, phase: int) -> bool:
        found = self.results(name, phase)
        return bool(found) and all(r.ok for r in found)

    def seconds(self, name: str, phase: int) -> float:
        return median([r.seconds for r in self.results(name, phase) if r.ok])

    def rss(self, name: str) -> float:
        return max(
            (r.rss_mb for (n, _), rs in self.by.items() if n == name for r in rs),
            default=float("nan"),
        )

    def names(self) -> list[str]:
        seen: list[str] = []
        for name, _ in self.by:
            if name not in seen:
                seen.append(name)
        return seen


def best_highmark(s: Summary) -> str | None:
    candidates = [n for n in s.names() if re.fullmatch(r"highmark-\d+(-p\d+)?", n)]
    timed = [(s.seconds(n, 1), n) for n in candidates if s.ok(n, 1)]
    return min(timed)[1] if timed else (candidates[0] if candidates else None)


def render(report: Report, notes: str) -> str:
    env = report.environment
    n = report.rows
    lines: list[str] = []
    add = lines.append
    add("# Loading benchmark: highmark against the binary-COPY limit and dlt")
    add("")
    add(
        f"Made by `{report.command}` on {report.started} (bench/bench.py; bench/README.md says "
        "how to run it). Every number is the whole process — start-up and imports included — "
        "as `highmark run` (or the contender's script) is started from a shell; medians of the "
        "repetitions, contenders interleaved."
    )
    add("")
    add("## Setup")
    add("")
    if env:
        loads = env.get("loads", [])
        add(
            f"- Machine: {env['cores']} cores ({env['cpu']}), {env['ram_gib']} GiB RAM, Linux "
            f"{env['kernel']}. 1-minute load average before the measurement: "
            f"{env.get('load_before', '?')}; at the start of each repetition (this benchmark's "
            f"own work included): {', '.join(str(x) for x in loads) or '—'}; after: "
            f"{env.get('load_after', '?')}."
        )
        add(
            f"- PostgreSQL server: {env['server']}; source and targets are databases of that "
            "one server."
        )
        others = sorted(r.others for r in report.results if r.others >= 0)
        if others:
            add(
                "- Other sessions share this machine. Before each measured run the benchmark "
                "waited until the rest of the machine had used less than 0.3 of a core for 3 s "
                "(waited "
                f"{env.get('quiet_waited', '?')} s in all, gave up waiting "
                f"{env.get('quiet_gave_up', '?')} times); during the runs, the rest of the "
                f"machine used a median {statistics.median(others):.2f} and at most "
                f"{others[-1]:.2f} cores (every run's figure is in the tables below; MariaDB "
                "is a shared server, so its work counts as other work). A PostgreSQL → "
                f"PostgreSQL run of phase 1 or 3 during which other work used more than "
                f"{DISTURBED_CORES} cores was measured again (at most {RETRIES} times; the last "
                f"measurement counts): {len(report.retried)} runs were."
            )
        settings = env["pg_settings"]
        add("- PostgreSQL settings: " + ", ".join(f"`{k}` {v}" for k, v in settings.items()))
        add("- Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    add(
        f"- Data: `orders` of {n:,} rows ({ORDERS_DDL.split('(', 1)[1].rstrip(')')}), "
        "primary key `id`, index on `(updated_at, id)`; one row in 20 shares its `updated_at` "
        "with the row before it (5 %); 10 % NULL notes. Phase 2 at the source: 1 % of the rows "
        "updated, 1 % inserted, 0.1 % soft-deleted (`deleted_at` set), `updated_at` bumped — "
        f"{delta_rows(n):,} rows. The source is VACUUM ANALYZEd after each change; a CHECKPOINT "
        "precedes every measured run."
    )
    add(
        "- Verification after every phase: target == source, by row count and an md5 over all "
        "columns in id order (each column cast to the source's type; dlt's `_dlt_*` columns "
        "left out). A run that fails it is reported FAILED."
    )
    add(
        "- highmark: `highmark --project highmark.yml run orders_sync`; incremental job, "
        "watermark `updated_at` + tiebreaker `id`, `soft_delete: {column: deleted_at, mode: "
        "mark}`, control store SQLite (the default) unless said otherwise. A first load into the "
        "empty target writes into it directly; later runs stage and merge. The first run "
        "creates the control store (its Alembic migrations included). highmark's bytecode is "
        "compiled before measuring, as an installed package's is (this sandbox sets "
        "PYTHONDONTWRITEBYTECODE, under which an editable install compiles every module at "
        "every start: ~50 ms)."
    )
    add(
        "- The limit: a psycopg 3 script that creates the target table (with its primary key) and "
        "pipes `COPY (SELECT …) TO STDOUT (FORMAT binary)` into `COPY … FROM STDIN (FORMAT "
        "binary)` in 1 MiB writes; for phases 2 and 3 it COPYs the window `updated_at > mark` "
        "into a temporary table and merges it with one `INSERT … ON CONFLICT DO UPDATE`."
    )
    add("")

    s = Summary(report, "pg")
    if s.by or report.unavailable:
        add(f"## PostgreSQL → PostgreSQL, {n:,} rows")
        add("")
        add("Wall time, median (ratio to the COPY limit); peak RSS is the largest of all runs.")
        add("")
        add(
            "| contender | phase 1: initial load | phase 2: delta | phase 3: nothing to do "
            "| peak RSS |"
        )
        add("|---|---:|---:|---:|---:|")
        hm_best = best_highmark(s)
        shown = ["copy", "psql"]
        if hm_best:
            shown.append(hm_best)
        shown += [
            x
            for x in s.names()
            if x.startswith("highmark-") and not x[9:].isdigit() and x != hm_best
        ]
        shown += ["dlt-fast", "dlt-default"]
        for name in shown:
            if name in report.unavailable:
                add(
                    f"| {report.labels.get(name, name)} | could not run: "
                    f"{report.unavailable[name]} | | | |"
                )
                continue
            if not any(s.results(name, p) for p in PHASES):
                continue
            cells = []
            for phase in PHASES:
                found = s.results(name, phase)
                if not found:
                    cells.append("—")
                elif not all(r.ok for r in found):
                    bad = next(r for r in found if not r.ok)
                    cells.append(f"FAILED ({bad.error[:160]})")
                else:
                    t, limit = s.seconds(name, phase), s.seconds("copy", phase)
                    cells.append(f"{cell_time(t)} ({t / limit:.2f}{X})")
            label = report.labels.get(name, name)
            if name == hm_best:
                label = f"**{label}**"
            add(f"| {label} | {' | '.join(cells)} | {s.rss(name):.0f} MB |")
        add("")
        add(
            "Throughput (rows per second of whole-process wall time; phase 2 counts the changed "
            "rows):"
        )
        add("")
        add(
            "| contender | phase 1 rows/s | phase 2 rows/s | every run: phase, seconds (peak RSS "
            "MB, cores used by other work meanwhile) |"
        )
        add("|---|---:|---:|---|")
        for name in s.names():
            per = []
            for phase in PHASES:
                for r in s.results(name, phase):
                    mark = "" if r.ok else " FAILED"
                    busy = f", {r.others:.2f}" if r.others >= 0 else ""
                    per.append(f"p{phase} {r.seconds:.2f} ({r.rss_mb:.0f}{busy}){mark}")
            rates = []
            for phase in (1, 2):
                t = s.seconds(name, phase)
                found = s.results(name, phase)
                rates.append(f"{found[0].rows / t:,.0f}" if found and t > 0 else "—")
            add(f"| {report.labels.get(name, name)} | {' | '.join(rates)} | {'; '.join(per)} |")
        add("")
        others = [x for x in s.names() if re.fullmatch(r"highmark-\d+", x)]
        if len(others) > 1 and hm_best:
            parts = [
                f"{int(x.split('-')[1]):,}: {cell_time(s.seconds(x, 1))} / "
                f"{cell_time(s.seconds(x, 2))} / {cell_time(s.seconds(x, 3))}, "
                f"{s.rss(x):.0f} MB"
                for x in others
            ]
            add(
                f"Batch sizes tried (phase 1 / 2 / 3 medians, peak RSS): {'; '.join(parts)}. "
                f"The table shows the best phase 1: {report.labels.get(hm_best, hm_best)}."
            )
            add("")
        lines.extend(targets(report, s, hm_best))

    c = Summary(report, "cross")
    if c.by:
        add(f"## highmark alone: other databases, {n:,} rows")
        add("")
        size = env.get("cross_batch_size", 0)
        add(
            f"`highmark run` as above, batch_size {size:,}, control store SQLite, medians of "
            f"{max(len(c.results(x, 1)) for x in c.names())} interleaved repetitions. These go "
            "through the Python row path: rows are read in batches into Python and written with "
            "executemany (into PostgreSQL they would go in with COPY), so peak RSS grows with "
            "batch_size. Verified like the rest, by an md5 of a canonical text form of every "
            "column (timestamps in UTC, amounts to the cent), computed on both sides."
        )
        add("")
        add("| source → target | phase 1 | rows/s | phase 2 | rows/s | peak RSS |")
        add("|---|---:|---:|---:|---:|---:|")
        for name in c.names():
            cells = []
            for phase in (1, 2):
                found = c.results(name, phase)
                if not found:
                    cells += ["—", "—"]
                elif not all(r.ok for r in found):
                    bad = next(r for r in found if not r.ok)
                    cells += [f"FAILED ({bad.error[:160]})", "—"]
                else:
                    t = c.seconds(name, phase)
                    cells += [cell_time(t), f"{found[0].rows / t:,.0f}"]
            add(f"| {report.labels.get(name, name)} | {' | '.join(cells)} | {c.rss(name):.0f} MB |")
        add("")

    sc = Summary(report, "scale")
    if sc.by:
        add("## Peak RSS against table size (PostgreSQL → PostgreSQL, phase 1, once per size)")
        add("")
        add("| contender | rows | wall time | rows/s | peak RSS | verified |")
        add("|---|---:|---:|---:|---:|---|")
        for name in sc.names():
            for r in sc.results(name, 1):
                add(
                    f"| {report.labels.get(name, name)} | {r.rows:,} | {cell_time(r.seconds)} "
                    f"| {r.rows / r.seconds:,.0f} | {r.rss_mb:.0f} MB | "
                    f"{'yes' if r.ok else 'FAILED: ' + r.error[:160]} |"
                )
        add("")

    if report.profile:
        lines.extend(render_profile(report.profile))
    add("## Notes")
    add("")
    add(NOTES_BEGIN)
    add(notes.strip("\n"))
    add(NOTES_END)
    add("")
    return "\n".join(lines)


def targets(report: Report, s: Summary, hm: str | None) -> list[str]:
    out = ["## Targets", ""]
    if hm is None:
        return [*out, "highmark did not run.", ""]

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    limit = {p: s.seconds("copy", p) for p in PHASES}
    mine = {p: s.seconds(hm, p) for p in PHASES}
    fast = {p: s.seconds("dlt-fast", p) for p in PHASES}
    default = {p: s.seconds("dlt-default", p) for p in PHASES}
    have_fast = s.ok("dlt-fast", 1)
    out.append(f"highmark = {report.labels.get(hm, hm)} (SQLite control store).")
    out.append("")
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    out.append(
        f"| phase 1 ≤ 1.5{X} the COPY limit | {cell_time(mine[1])} vs {cell_time(limit[1])}"
        f" = {mine[1] / limit[1]:.2f}{X} | {verdict(mine[1] <= 1.5 * limit[1])} |"
    )
    if have_fast:
        out.append(
            f"| phase 1 ≥ 2{X} faster than dlt's fastest | dlt {cell_time(fast[1])} / "
            f"highmark {cell_time(mine[1])} = {fast[1] / mine[1]:.1f}{X} | "
            f"{verdict(fast[1] >= 2 * mine[1])} |"
        )
    else:
        out.append(f"| phase 1 ≥ 2{X} faster than dlt's fastest | dlt's fastest did not run | — |")
    out.append(
        f"| phase 2 ≤ 2{X} the COPY-limit delta | {cell_time(mine[2])} vs "
        f"{cell_time(limit[2])} = {mine[2] / limit[2]:.2f}{X} | "
        f"{verdict(mine[2] <= 2 * limit[2])} |"
    )
    out.append(
        f"| phase 3 whole `highmark run` ≤ 0.5 s | {cell_time(mine[3])} | "
        f"{verdict(mine[3] <= 0.5)} |"
    )
    dlt_noop = [
        (v, k) for k, v in (("fastest", fast[3]), ("defaults", default[3])) if not math.isnan(v)
    ]
    if dlt_noop:
        quickest, which = min(dlt_noop)
        out.append(
            f"| phase 3 faster than dlt's no-op run | highmark {cell_time(mine[3])}, "
            f"dlt {which} {cell_time(quickest)} | {verdict(mine[3] < quickest)} |"
        )
    sc = Summary(report, "scale")
    small = [r for r in sc.results(f"{hm}@{report.rows}", 1) if r.ok]
    small = small or [
        r
        for n, rs in sc.by.items()
        if n[0].endswith(f"@{report.rows}") and n[0].startswith("highmark")
        for r in rs
        if r.ok
    ]
    big = [
        r
        for n, rs in sc.by.items()
        if n[0].startswith("highmark") and not n[0].endswith(f"@{report.rows}")
        for r in rs
        if r.ok
    ]
    if small and big:
        a, b = small[0], big[0]
        out.append(
            f"| peak RSS at 10{X}N ≤ 1.2{X} at N | {b.rss_mb:.0f} MB at {b.rows:,} rows vs "
            f"{a.rss_mb:.0f} MB at {a.rows:,} = {b.rss_mb / a.rss_mb:.2f}{X} | "
            f"{verdict(b.rss_mb <= 1.2 * a.rss_mb)} |"
        )
    else:
        out.append(f"| peak RSS at 10{X}N ≤ 1.2{X} at N | not measured in this run | — |")
    out.append("")
    return out


BOILERPLATE = ("<module>", "_run_code", "_run_module", "main (highmark/", "Command.", "Group.",
               "Context.invoke", "pass_obj", "handles_errors", "run (highmark/cli.py)",
               "Project.run ", "run_job ", "_JobRun.execute ", "_JobRun._work ")  # fmt: skip


def render_profile(p: dict[str, Any]) -> list[str]:
    out = ["## Profile", ""]
    out.append(
        f"One more highmark run of each phase (batch_size {p.get('batch_size', 0):,}), with the "
        "server logging every statement's duration (`log_min_duration_statement = 0` on the "
        "source and target databases). Phases 1 and 2 under py-spy (`record --idle --threads`: "
        "wall clock, waits included, main thread; py-spy attaches a few hundred ms into the "
        "process, so start-up is missing there), phase 3 under cProfile (wall clock, start-up "
        "included). Profilers slow the process down: shares matter, not times."
    )
    out.append("")
    for phase in PHASES:
        e = p.get(f"phase{phase}")
        if not e:
            continue
        status = "" if e.get("ok") else f" — FAILED: {e.get('error', '')}"
        out.append(
            f"### Phase {phase} ({PHASE_NAMES[phase]}): {e['seconds']:.2f} s under "
            f"{e.get('tool', '?')}{status}"
        )
        out.append("")
        if e.get("tool") == "py-spy":
            out.append(
                "Samples by the innermost highmark function on the stack (what highmark was "
                "doing; the library and database work below it included):"
            )
        else:
            out.append("Cumulative time of highmark's functions (nested; imports apart):")
        out.append("")
        out.extend(
            f"- {share:.1f} % `{name}`"
            for name, share in e.get("highmark", [])
            if share >= 1.0 and not name.startswith(BOILERPLATE)
        )
        out.append("")
        out.append(
            "Leaf frames (self time): "
            + "; ".join(f"`{name}` {share:.1f} %" for name, share in e.get("self", [])[:8])
        )
        out.append("")
        if e.get("server"):
            out.append(f"Server time by statement (count {X} total seconds):")
            out.append("")
            out.extend(
                f"- {count} {X} {secs:.3f} s: `{shape}`" for shape, count, secs in e["server"]
            )
            out.append("")
    imports = p.get("imports")
    if imports:
        out.append(
            "### Imports of `highmark run` (phase 3 again, `python -X importtime`, which slows "
            f"imports down; that run took {p.get('phase3_import_run_seconds', 0):.2f} s)"
        )
        out.append("")
        out.append(
            f"Total import time: {imports['total_ms']:.0f} ms. By top-level package (self "
            "time): " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in imports["by_package"])
        )
        out.append("")
        out.append(
            "Slowest top-level imports (cumulative): "
            + ", ".join(f"`{name}` {ms:.0f} ms" for name, ms in imports["top_level"][:6])
        )
        out.append("")
    return out


def read_notes(path: Path) -> str:
    if not path.exists():
        return "(none yet)"
    text = path.read_text()
    if NOTES_BEGIN in text and NOTES_END in text:
        return text.split(NOTES_BEGIN, 1)[1].split(NOTES_END, 1)[0]
    return "(none yet)"


def load_report(path: Path) -> Report:
    data = json.loads(path.read_text())
    results = [Result(**r) for r in data.pop("results")]
    return Report(results=results, **data)


# ---------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="N (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--batch-sizes",
        default="50000,100000,250000",
        help="highmark batch_size values to try (comma-separated)",
    )
    parser.add_argument(
        "--parts",
        default="pg,cross,scale,profile",
        help="what to run: pg (the contenders), cross (highmark with SQLite and "
        "MariaDB), scale (peak RSS at N and 10xN), profile",
    )
    parser.add_argument(
        "--cross-batch-size",
        type=int,
        default=100_000,
        help="highmark's batch_size into SQLite and MariaDB (the row path)",
    )
    parser.add_argument("--scale-only", action="store_true", help="--parts scale")
    parser.add_argument("--skip-scale", action="store_true", help="leave out the 10xN run")
    parser.add_argument("--scale-rows", type=int, help="rows of the large run (default 10xN)")
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument(
        "--parallelism",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[2, 4],
        help="highmark parallelism values to try besides 1, at the middle batch size "
        "(comma-separated; empty for none)",
    )
    parser.add_argument(
        "--contenders", help="only these (comma-separated names: copy, psql, highmark-100000…)"
    )
    parser.add_argument(
        "--max-load",
        type=float,
        default=1.5,
        help="wait for the 1-minute load average to drop below this",
    )
    parser.add_argument("--quiet-wait", type=float, default=600, help="seconds to wait for it")
    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.3,
        help="before each measured run, wait (up to --run-wait s) until other work uses less "
        "CPU than this (cores)",
    )
    parser.add_argument("--run-wait", type=float, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument(
        "--raw",
        type=Path,
        default=Path(tempfile.gettempdir()) / "hm-bench.json",
        help="the raw results, as JSON (written after every part)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RAW",
        help="only write the report again from a raw JSON file",
    )
    args = parser.parse_args()

    if args.render:
        report = load_report(args.render)
        args.out.write_text(render(report, read_notes(args.out)))
        return 0
    parts = {"scale"} if args.scale_only else set(args.parts.split(","))
    if args.skip_scale:
        parts.discard("scale")
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    command = os.environ.get("BENCH_COMMAND") or " ".join(["bench/bench.py", *sys.argv[1:]])
    report = Report(
        rows=args.rows, command=command, started=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )

    server = Server(os.environ.get("BENCH_PG"))
    work = Path(tempfile.mkdtemp(prefix="hm-bench-"))
    # An installed package comes with its bytecode compiled; an editable install in an
    # environment with PYTHONDONTWRITEBYTECODE set would compile every module at every start.
    run([str(PYTHON), "-m", "compileall", "-q", str(ROOT / "highmark")])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        server.start()
        ctx = Context(server, work, args.rows)
        ctx.quiet = Quiet(server, args.quiet_cores, args.run_wait)
        report.environment = environment(server)
        report.environment["cross_batch_size"] = args.cross_batch_size
        report.environment["load_before"] = round(wait_for_quiet(args.max_load, args.quiet_wait), 2)

        def save() -> None:
            args.raw.write_text(json.dumps(asdict(report), indent=1, default=str))
            args.out.write_text(render(report, read_notes(args.out)))

        best = sizes[len(sizes) // 2] if len(sizes) > 1 else sizes[0]
        if "pg" in parts:
            contenders: list[Contender] = [CopyLimit(ctx), PsqlPipe(ctx)]
            contenders += [Highmark(ctx, size) for size in sizes]
            contenders.append(Highmark(ctx, best, migrated=True))
            contenders.append(Highmark(ctx, best, control="postgresql"))
            contenders += [Highmark(ctx, best, parallelism=n) for n in args.parallelism]
            if not args.skip_dlt:
                contenders += [Dlt(ctx, "fast"), Dlt(ctx, "default")]
            if args.contenders:
                wanted = set(args.contenders.split(","))
                contenders = [c for c in contenders if c.name in wanted]
            main_section(ctx, report, contenders, args.repeat)
            save()
            found = best_highmark(Summary(report, "pg"))
            best = int(found.split("-")[1]) if found else best
        if "cross" in parts:
            cross_section(ctx, report, args.cross_batch_size, args.repeat)
            save()
        if "scale" in parts:
            scale_section(ctx, report, best, args.scale_rows or 10 * args.rows)
            save()
        if "profile" in parts:
            profile_section(ctx, report, best)
        report.environment["load_after"] = round(os.getloadavg()[0], 2)
        report.environment["quiet_waited"] = round(ctx.quiet.waited)
        report.environment["quiet_gave_up"] = ctx.quiet.gave_up
        save()
        log(f"report written to {args.out}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in report.results if not r.ok and not r.contender.startswith("dlt")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
