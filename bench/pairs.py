"""Every pair of databases: highmark against that pair's limit (bench/README.md, "pairs.py").

For each source → target among SQLite, PostgreSQL and MariaDB, one run measures side by side, as
whole processes started from a shell: ``highmark run`` and the pair's limit (bench/limits.py), for
phase 1 (the first load of ``--rows`` rows into an empty target) and phase 2 (the delta: 1 %
updated, 1 % inserted, 0.1 % soft-deleted). After every phase each target is verified equal to
the source: row count and an md5 over a canonical text of every column in id order
(bench.canonical_digest). Wall time, rows/s and peak RSS (``/usr/bin/time``) per run; medians of
``--repeat`` interleaved repetitions. The table goes between the ``pairs`` markers of
bench/RESULTS.md (``--out``), and is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench as b

LIMITS = Path(__file__).resolve().parent / "limits.py"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# Databases of this checkout's own (one machine, several checkouts benchmarking at once).
PREFIX = os.environ.get("BENCH_PAIRS_PREFIX") or f"hmp{zlib.crc32(str(b.ROOT).encode()) % 10_000}_"
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}
ALL = [(s, t) for s in NAMES for t in NAMES]
BEGIN, END = "<!-- pairs: written by bench/pairs.py -->", "<!-- /pairs -->"
LIMIT_HOW = {
    ("sqlite", "sqlite"): "ATTACH + INSERT … SELECT",
    ("mariadb", "mariadb"): "INSERT … SELECT inside the server",
    ("postgresql", "postgresql"): "binary COPY piped by psycopg",
    ("postgresql", "mariadb"): "COPY TO STDOUT piped into LOAD DATA LOCAL INFILE",
    ("sqlite", "mariadb"): "fetchmany → text → LOAD DATA LOCAL INFILE",
    ("mariadb", "postgresql"): "SSCursor → COPY FROM STDIN",
    ("sqlite", "postgresql"): "fetchmany → COPY FROM STDIN",
    ("postgresql", "sqlite"): "server cursor read ahead on a thread, text values → executemany",
    ("mariadb", "sqlite"): "SSCursor, text values → executemany",
}


def maria(statement: str, db: str | None = None, **kwargs: Any) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", user="root", database=db, autocommit=True, **kwargs)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@dataclass
class Sources:
    """The source ``orders`` in each database, and what the targets must equal after each phase."""

    work: Path
    server: b.Server
    rows: int
    expected: dict[int, b.Digest] = field(default_factory=dict)

    @property
    def pg_db(self) -> str:
        return PREFIX + "src"

    @property
    def maria_db(self) -> str:
        return PREFIX + "src"

    @property
    def sqlite(self) -> Path:
        return self.work / "source.db"

    def url(self, kind: str, *, for_highmark: bool) -> str:
        if kind == "postgresql":
            return self.server.url(self.pg_db)
        if kind == "sqlite":
            return f"sqlite:///{self.sqlite}" if for_highmark else str(self.sqlite)
        return f"{b.MARIADB}/{self.maria_db}" if for_highmark else self.maria_db

    def build(self) -> None:
        b.log(f"building the sources ({self.rows:,} rows)")
        b.build_source(self.server, self.pg_db, self.rows)
        self.expected[1] = b.canonical_digest(b.pg_rows(self.server, self.pg_db))
        b.copy_to_sqlite(self.server, self.pg_db, self.sqlite, create=True)
        maria(f"DROP DATABASE IF EXISTS {self.maria_db}")
        maria(f"CREATE DATABASE {self.maria_db}")
        sys.path.insert(0, str(LIMITS.parent))
        import limits

        maria(limits.MARIADB_DDL, self.maria_db)
        maria("CREATE INDEX orders_updated_at_id ON orders (updated_at, id)", self.maria_db)
        limits.into_maria(
            self.maria_db,
            "append",
            limits.pg_copy_text(self.url("postgresql", for_highmark=False), "", ()),
        )
        for kind, digest in self.digests().items():
            assert digest == self.expected[1], f"{kind} source differs"

    def delta(self) -> None:
        b.log("applying the delta to every source")
        b.apply_delta(self.server, self.pg_db, self.rows)
        self.expected[2] = b.canonical_digest(b.pg_rows(self.server, self.pg_db))
        changed = b.changed_rows(self.server, self.pg_db)
        b.upsert_sqlite(self.sqlite, changed)
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", user="root", database=self.maria_db,
                               init_command="SET time_zone = '+00:00'")  # fmt: skip
        try:
            with conn.cursor() as cur:
                cur.executemany(
                    f"REPLACE INTO orders ({b.COLUMNS}) VALUES ({', '.join(['%s'] * 8)})",
                    [
                        tuple(
                            v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v
                            for v in row
                        )
                        for row in changed
                    ],
                )
            conn.commit()
        finally:
            conn.close()
        for kind, digest in self.digests().items():
            assert digest == self.expected[2], f"{kind} source differs after the delta"

    def digests(self) -> dict[str, b.Digest]:
        return {
            "sqlite": b.canonical_digest(b.sqlite_rows(self.sqlite)),
            "mariadb": b.canonical_digest(b.mariadb_rows(self.maria_db)),
        }

    def drop(self) -> None:
        self.server.drop(self.pg_db)
        maria(f"DROP DATABASE IF EXISTS {self.maria_db}")


@dataclass
class Contender:
    """highmark or the limit, for one pair: its own target, made empty before phase 1."""

    sources: Sources
    source: str
    target: str
    limit: bool
    batch_size: int

    @property
    def key(self) -> str:
        return f"{self.source}-{self.target}-{'limit' if self.limit else 'highmark'}"

    @property
    def dir(self) -> Path:
        return self.sources.work / self.key

    @property
    def db(self) -> str:
        return PREFIX + self.key.replace("-", "_")

    def setup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        if self.target == "postgresql":
            self.sources.server.create(self.db)
        elif self.target == "mariadb":
            maria(f"DROP DATABASE IF EXISTS {self.db}")
            maria(f"CREATE DATABASE {self.db}")
        if not self.limit:
            (self.dir / "highmark.yml").write_text(
                b.PROJECT_TEMPLATE.format(
                    control="", src=self.sources.url(self.source, for_highmark=True),
                    dst=self.target_url(for_highmark=True), batch_size=self.batch_size,
                    parallelism=1,
                )
            )  # fmt: skip

    def teardown(self) -> None:
        if self.target == "postgresql":
            self.sources.server.drop(self.db)
        elif self.target == "mariadb":
            maria(f"DROP DATABASE IF EXISTS {self.db}")
        shutil.rmtree(self.dir, ignore_errors=True)

    def target_url(self, *, for_highmark: bool) -> str:
        if self.target == "postgresql":
            return self.sources.server.url(self.db)
        if self.target == "sqlite":
            path = self.dir / "target.db"
            return f"sqlite:///{path}" if for_highmark else str(path)
        return f"{b.MARIADB}/{self.db}" if for_highmark else self.db

    def argv(self, phase: int) -> list[str]:
        if self.limit:
            return [
                str(b.PYTHON), str(LIMITS), self.source, self.target, str(phase),
                self.sources.url(self.source, for_highmark=False),
                self.target_url(for_highmark=False), str(self.dir / "mark"),
            ]  # fmt: skip
        return [str(b.HIGHMARK), "--project", "highmark.yml", "run", "orders_sync"]

    def digest(self) -> b.Digest:
        if self.target == "postgresql":
            return b.canonical_digest(b.pg_rows(self.sources.server, self.db))
        if self.target == "sqlite":
            return b.canonical_digest(b.sqlite_rows(self.dir / "target.db"))
        return b.canonical_digest(b.mariadb_rows(self.db))


@dataclass
class Run:
    seconds: float
    rss_mb: float


def settle(server: b.Server) -> None:
    """Before each measured run, the writes of the runs and the delta before it reach the disk
    (``sync``, a PostgreSQL ``CHECKPOINT``, no autovacuum at work), so that no contender pays for
    another's flush. A run's commits wait on the disk: the same SQLite → PostgreSQL delta took
    0.74 s alone and 1.23 s in a pairs run, just after the other targets had been loaded."""
    os.sync()
    with server.admin() as conn:
        # An autovacuum of a table loaded in phase 1 runs for seconds, and would land on
        # whichever run comes next.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if not busy or not busy[0]:
                break
            time.sleep(0.5)
        conn.execute("CHECKPOINT")
    os.sync()


def measure(c: Contender, phase: int, expected: b.Digest) -> Run | str:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="")
    env.pop("PYTHONDONTWRITEBYTECODE")
    m = b.measure(c.argv(phase), env=env, cwd=c.dir)
    if m.returncode != 0:
        return f"exit {m.returncode}: {b.tail(m.stderr)}"
    got = c.digest()
    if got != expected:
        return f"target differs from the source ({got} vs {expected})"
    return Run(m.seconds, m.rss_mb)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--pairs", default="all", help="e.g. sqlite-sqlite,postgresql-mariadb")
    parser.add_argument("--out", type=Path, default=b.ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    pairs = ALL if args.pairs == "all" else [tuple(p.split("-")) for p in args.pairs.split(",")]
    subprocess_compile()
    server = b.Server(PG)
    server.start()
    results: dict[tuple[str, int], list[Run]] = {}
    failures: dict[tuple[str, int], str] = {}
    with tempfile.TemporaryDirectory(prefix="hm-pairs-") as tmp:
        sources = Sources(Path(tmp), server, args.rows)
        load_before = os.getloadavg()[0]
        try:
            for rep in range(args.repeat):
                sources.build()
                contenders = [
                    Contender(sources, s, t, limit, args.batch_size)
                    for s, t in pairs
                    for limit in (True, False)
                ]
                shift = rep % len(contenders)
                order = contenders[shift:] + contenders[:shift]
                for c in order:
                    c.setup()
                for phase in (1, 2):
                    if phase == 2:
                        sources.delta()
                    for c in order:
                        if (c.key, 1) in failures:
                            continue
                        b.log(f"{c.key} phase {phase}")
                        settle(server)
                        got = measure(c, phase, sources.expected[phase])
                        if isinstance(got, str):
                            b.log(f"{c.key} phase {phase} FAILED: {got}")
                            failures[(c.key, phase)] = got
                        else:
                            b.log(f"  {got.seconds:.2f} s, {got.rss_mb:.0f} MB")
                            results.setdefault((c.key, phase), []).append(got)
                for c in order:
                    c.teardown()
                sources.drop()
        finally:
            server.stop()
    table = render(pairs, results, failures, args, load_before)
    print(table)
    write(args.out, table)
    return 1 if failures else 0


def subprocess_compile() -> None:
    """highmark's bytecode compiled first, as an installed package's is."""
    import compileall

    compileall.compile_dir(str(b.ROOT / "highmark"), quiet=1)


def render(
    pairs: list[Any],
    results: dict[tuple[str, int], list[Run]],
    failures: dict[tuple[str, int], str],
    args: argparse.Namespace,
    load_before: float,
) -> str:
    delta = b.delta_rows(args.rows)
    rows_of = {1: args.rows, 2: delta}
    lines = [
        f"Made by `.venv/bin/python bench/pairs.py --rows {args.rows} --repeat {args.repeat}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, highmark {git_head()}; {args.rows:,} rows, "
        f"delta {delta:,} rows; batch_size {args.batch_size:,}; medians of {args.repeat} "
        f"interleaved repetition(s); 1-minute load average {load_before:.2f} before (a shared "
        "2-core machine: the ratios, measured side by side, are what count). Every phase was "
        "verified target == source (count and md5 of every column in id order).",
        "",
        "| source → target | limit (how) | phase 1: highmark / limit | ratio | highmark rows/s "
        "| phase 2: highmark / limit | ratio | highmark rows/s | peak RSS highmark / limit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, t in pairs:
        cells = [f"{NAMES[s]} → {NAMES[t]}", LIMIT_HOW[(s, t)]]
        rss: list[str] = []
        for phase in (1, 2):
            hm = results.get((f"{s}-{t}-highmark", phase))
            lim = results.get((f"{s}-{t}-limit", phase))
            if not hm or not lim:
                why = failures.get((f"{s}-{t}-highmark", phase)) or failures.get(
                    (f"{s}-{t}-limit", phase), "not run"
                )
                cells += [f"FAILED: {why[:60]}", "—", "—"]
                continue
            h = statistics.median(r.seconds for r in hm)
            li = statistics.median(r.seconds for r in lim)
            cells += [f"{h:.2f} s / {li:.2f} s", f"{h / li:.2f}{b.X}", f"{rows_of[phase] / h:,.0f}"]
        hm_all = [r.rss_mb for p in (1, 2) for r in results.get((f"{s}-{t}-highmark", p), [])]
        lim_all = [r.rss_mb for p in (1, 2) for r in results.get((f"{s}-{t}-limit", p), [])]
        rss.append(f"{max(hm_all):.0f} / {max(lim_all):.0f} MB" if hm_all and lim_all else "—")
        lines.append("| " + " | ".join(cells + rss) + " |")
    return "\n".join(lines) + "\n"


def git_head() -> str:
    import subprocess

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=b.ROOT, check=False).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "status", "--porcelain", "highmark"], capture_output=True,
                           text=True, cwd=b.ROOT, check=False).stdout.strip()  # fmt: skip
    return head + (" (with uncommitted changes)" if dirty else "")


def write(out: Path, table: str) -> None:
    text = out.read_text() if out.exists() else ""
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        # Inside the notes, which bench.py keeps when it writes the rest of RESULTS.md again.
        section = f"### Every pair against its limit (bench/pairs.py)\n\n{block}\n"
        if b.NOTES_END in text:
            head, _, tail = text.rpartition(b.NOTES_END)
            text = f"{head.rstrip()}\n\n{section}{b.NOTES_END}{tail}"
        else:
            text = f"{text.rstrip()}\n\n{section}"
    out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
