"""Start-up: short runs of highmark at one commit against another (bench/README.md, "startup.py").

Three whole processes as a user starts them, each side by side with the same run of the code at
``--base`` (its ``highmark/`` put in a temporary folder and put first on ``PYTHONPATH``) and with
the pair's limit (bench/limits.py):

- PostgreSQL → PostgreSQL with nothing to do (the limit's phase 3),
- the delta (1 % updated, 1 % inserted, 0.1 % soft-deleted) SQLite → SQLite and SQLite →
  PostgreSQL, the target put back as the first load left it before each run.

The control store is SQLite (the default). Both trees' bytecode is compiled first, as an installed
package's is. Wall time and CPU time (user + system, children included), medians of ``--repeat``
interleaved repetitions (base, head, limit; the order turns each time); a delta run's target is
checked to have the source's row count. The table is printed and written to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench as b

LIMITS = Path(__file__).resolve().parent / "limits.py"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PREFIX = "hmstart_"
NAMES = {
    "pgpg": "PostgreSQL → PostgreSQL, nothing to do",
    "sqsq": "SQLite → SQLite, delta",
    "sqpg": "SQLite → PostgreSQL, delta",
}
KINDS = {"pgpg": ("postgresql", "postgresql"), "sqsq": ("sqlite", "sqlite"),
         "sqpg": ("sqlite", "postgresql")}  # fmt: skip


@dataclass
class Case:
    """One scenario: highmark's project and the limit's own target, each with a snapshot."""

    name: str
    work: Path
    server: b.Server

    @property
    def dir(self) -> Path:
        return self.work / self.name

    def target(self, who: str) -> str:
        """The target of ``who`` (highmark or limit): a PostgreSQL URL or a SQLite path."""
        if KINDS[self.name][1] == "postgresql":
            return self.server.url(f"{PREFIX}{self.name}_{who}")
        return str(self.dir / f"{who}.db")

    def source(self) -> str:
        if KINDS[self.name][0] == "postgresql":
            return self.server.url(PREFIX + "src")
        return str(self.work / "source.db")

    def setup(self) -> None:
        self.dir.mkdir(parents=True)
        for who in ("highmark", "limit"):
            if KINDS[self.name][1] == "postgresql":
                self.server.create(f"{PREFIX}{self.name}_{who}")
        (self.dir / "highmark.yml").write_text(
            b.PROJECT_TEMPLATE.format(
                control="", src=_url(self.source()), dst=_url(self.target("highmark")),
                batch_size=100_000, parallelism=1,
            )
        )  # fmt: skip

    def snapshot(self) -> None:
        """Keep the first load's state, to put back before each measured delta."""
        shutil.copytree(self.dir, self.work / f"{self.name}.snap")
        if KINDS[self.name][1] == "postgresql":
            for who in ("highmark", "limit"):
                db = f"{PREFIX}{self.name}_{who}"
                self.server.create(db + "_snap", template=db)

    def restore(self) -> None:
        if self.name == "pgpg":
            return  # nothing to do stays nothing to do
        shutil.rmtree(self.dir)
        shutil.copytree(self.work / f"{self.name}.snap", self.dir)
        if KINDS[self.name][1] == "postgresql":
            for who in ("highmark", "limit"):
                db = f"{PREFIX}{self.name}_{who}"
                self.server.create(db, template=db + "_snap")

    def argv(self, who: str, phase: int) -> list[str]:
        if who == "limit":
            source, target = KINDS[self.name]
            return [str(b.PYTHON), str(LIMITS), source, target, str(phase), self.source(),
                    self.target("limit"), str(self.dir / "limit.mark")]  # fmt: skip
        return [str(b.HIGHMARK), "--project", "highmark.yml", "run", "orders_sync"]

    def target_rows(self, who: str) -> int:
        target = self.target(who)
        if "://" in target:
            with self.server.connect(target.rsplit("/", 1)[1]) as conn:
                row = conn.execute("SELECT count(*) FROM orders").fetchone()
                assert row is not None
                return int(row[0])
        import sqlite3

        with sqlite3.connect(target) as conn:
            return int(conn.execute("SELECT count(*) FROM orders").fetchone()[0])

    def drop(self) -> None:
        if KINDS[self.name][1] == "postgresql":
            for who in ("highmark", "limit"):
                for suffix in ("", "_snap"):
                    self.server.drop(f"{PREFIX}{self.name}_{who}{suffix}")


def _url(target: str) -> str:
    """highmark's form of a target: a SQLite path becomes a sqlite:/// URL."""
    return target if "://" in target else f"sqlite:///{target}"


def environment(tree: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def check(argv: list[str], cwd: Path, env: dict[str, str]) -> b.Measured:
    m = b.measure(argv, env=env, cwd=cwd)
    if m.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {m.returncode}: {b.tail(m.stderr)}")
    return m


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base", help="the commit to compare with (default: where HEAD left main, merge-base)"
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=b.ROOT / "bench" / "RESULTS-startup.md")
    args = parser.parse_args()
    args.command = " ".join(["bench/startup.py", *sys.argv[1:]])
    if args.base is None:
        args.base = git("merge-base", "main", "HEAD")
    work = Path(tempfile.mkdtemp(prefix="hm-startup-"))
    base_tree = work / "base"
    base_tree.mkdir()
    archive = subprocess.run(["git", "-C", str(b.ROOT), "archive", args.base, "highmark"],
                             check=True, capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive, check=True)
    for tree in (base_tree, b.ROOT):
        subprocess.run([str(b.PYTHON), "-m", "compileall", "-q", str(tree / "highmark")],
                       check=True, env=environment(None))  # fmt: skip
    server = b.Server(PG)
    server.start()
    cases = [Case(name, work, server) for name in NAMES]
    src = PREFIX + "src"
    try:
        b.log(f"building the source ({args.rows:,} rows) and the first loads")
        b.build_source(server, src, args.rows)
        b.copy_to_sqlite(server, src, work / "source.db", create=True)
        for case in cases:
            case.setup()
            for who in ("highmark", "limit"):
                check(case.argv(who, 1), case.dir, environment(None))
            case.snapshot()
        b.apply_delta(server, src, args.rows)
        b.upsert_sqlite(work / "source.db", b.changed_rows(server, src))
        expected = args.rows + max(args.rows // 100, 1)
        pgpg = cases[0]
        for who in ("highmark", "limit"):  # the delta, so that the next runs have nothing to do
            check(pgpg.argv(who, 2), pgpg.dir, environment(None))
        trees: dict[str, Path | None] = {"base": base_tree, "head": None, "limit": None}
        runs: dict[tuple[str, str], list[b.Measured]] = {}
        for i in range(args.repeat):
            b.log(f"repetition {i + 1} of {args.repeat}")
            for case in cases:
                order = list(trees) if i % 2 == 0 else list(reversed(trees))
                for who in order:
                    case.restore()
                    server.checkpoint()  # as bench.py: no dirty pages of the restore meanwhile
                    phase = 3 if case.name == "pgpg" else 2
                    argv = case.argv("limit" if who == "limit" else "highmark", phase)
                    m = check(argv, case.dir, environment(trees[who]))
                    rows = case.target_rows("limit" if who == "limit" else "highmark")
                    if rows != expected:
                        raise SystemExit(f"{case.name} {who}: {rows} rows, not {expected}")
                    runs.setdefault((case.name, who), []).append(m)
        table = render(args, runs)
    finally:
        for case in cases:
            case.drop()
        server.drop(src)
        shutil.rmtree(work, ignore_errors=True)
    print(table)
    args.out.write_text(table)
    return 0


def git(*argv: str) -> str:
    done = subprocess.run(["git", "-C", str(b.ROOT), *argv], check=True, capture_output=True)
    return done.stdout.decode().strip()


def render(args: argparse.Namespace, runs: dict[tuple[str, str], list[b.Measured]]) -> str:
    head, base = git("rev-parse", "--short", "HEAD"), git("rev-parse", "--short", args.base)
    load = os.getloadavg()[0]
    lines = [
        "# Start-up: short runs, before and after",
        "",
        f"Made by `.venv/bin/python {args.command}` (base {base}, head {head}); "
        f"1-minute load average {load:.1f} "
        "at the end (a shared 2-core machine: compare the columns of one row, measured side by "
        "side). Whole processes; control store SQLite; bytecode compiled. Medians of the "
        "interleaved repetitions; min in brackets.",
        "",
        "| run | base: wall | head: wall | limit: wall | base ÷ limit | head ÷ limit "
        "| base: CPU | head: CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in NAMES.items():
        wall = {who: [m.seconds for m in runs[name, who]] for who in ("base", "head", "limit")}
        cpu = {who: [m.cpu for m in runs[name, who]] for who in ("base", "head")}
        med = {who: statistics.median(v) for who, v in wall.items()}
        lines.append(
            f"| {label} | {med['base']:.2f} s ({min(wall['base']):.2f}) "
            f"| {med['head']:.2f} s ({min(wall['head']):.2f}) "
            f"| {med['limit']:.2f} s ({min(wall['limit']):.2f}) "
            f"| {med['base'] / med['limit']:.2f}× | {med['head'] / med['limit']:.2f}× "  # noqa: RUF001
            f"| {statistics.median(cpu['base']):.2f} s | {statistics.median(cpu['head']):.2f} s |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
