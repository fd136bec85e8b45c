"""Peak RSS of ``highmark run`` on every pair of databases, at several table sizes: is it flat?

For each ``--rows`` size (default 1,000,000 and 10,000,000), the sources of bench/pairs.py are
built, and each pair's highmark job (bench/pairs.py's project: batch_size 100,000) runs its first
load (phase 1) and its delta (phase 2: 1 % updated, 1 % inserted, 0.1 % soft-deleted) as a whole
process, its peak RSS taken by ``/usr/bin/time``; the target is verified equal to the source
after each phase (row count and md5 of every column in id order). Only highmark runs here: the
limits and the ratios are bench/pairs.py's. The table goes between the ``memory`` markers of
bench/RESULTS.md (``--out``), and is printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pairs as p

import bench as b

BEGIN, END = "<!-- memory: written by bench/memory.py -->", "<!-- /memory -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000", help="sizes, comma-separated")
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--pairs", default="all", help="e.g. sqlite-sqlite,postgresql-mariadb")
    parser.add_argument(
        "--phases", default="1,2", help="1 (first load), 2 (delta) or both; a delta needs phase 1"
    )
    parser.add_argument("--out", type=Path, default=b.ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    phases = sorted({int(x) for x in args.phases.split(",")} | {1})
    sizes = [int(n) for n in args.rows.split(",")]
    pairs = p.ALL if args.pairs == "all" else [tuple(x.split("-")) for x in args.pairs.split(",")]
    p.subprocess_compile()
    server = b.Server(p.PG)
    server.start()
    measured: dict[tuple[str, str, int, int], p.Run | str] = {}
    try:
        for rows in sizes:
            with tempfile.TemporaryDirectory(prefix="hm-memory-") as tmp:
                sources = p.Sources(Path(tmp), server, rows)
                sources.build()
                contenders = [p.Contender(sources, s, t, False, args.batch_size) for s, t in pairs]
                for c in contenders:
                    c.setup()
                for phase in phases:
                    if phase == 2:
                        sources.delta()
                    for c in contenders:
                        b.log(f"{rows:,} rows: {c.key} phase {phase}")
                        got = p.measure(c, phase, sources.expected[phase])
                        b.log(f"  {got}")
                        measured[(c.source, c.target, rows, phase)] = got
                for c in contenders:
                    c.teardown()
                sources.drop()
    finally:
        server.stop()
    table = render(pairs, sizes, measured, args)
    print(table)
    write(args.out, table)
    return 1 if any(isinstance(m, str) for m in measured.values()) else 0


def render(
    pairs: list[tuple[str, ...]],
    sizes: list[int],
    measured: dict[tuple[str, str, int, int], p.Run | str],
    args: argparse.Namespace,
) -> str:
    head = " | ".join(f"{n:,} rows: first load / delta" for n in sizes)
    lines = [
        f"Made by `.venv/bin/python bench/memory.py --rows {args.rows} --phases {args.phases}` "
        f"on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, highmark {p.git_head()}; batch_size "
        f"{args.batch_size:,}. Peak RSS of the whole `highmark run` process (MB), and its wall "
        "time in brackets (a shared machine: times here are only a guide, bench/pairs.py's "
        "ratios are the measure). Every phase was verified target == source.",
        "",
        f"| source → target | {head} |",
        "|---|" + "---:|" * len(sizes),
    ]
    for s, t in pairs:
        cells = [f"{p.NAMES[s]} → {p.NAMES[t]}"]
        for rows in sizes:
            shown = []
            for phase in (1, 2):
                got = measured.get((s, t, rows, phase))
                shown.append(
                    "not run" if got is None
                    else f"FAILED: {got[:40]}" if isinstance(got, str)
                    else f"{got.rss_mb:.0f} MB ({got.seconds:.1f} s)"
                )  # fmt: skip
            cells.append(" / ".join(shown))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(out: Path, table: str) -> None:
    text = out.read_text() if out.exists() else ""
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        section = f"### Peak memory from 1M to 10M rows (bench/memory.py)\n\n{block}\n"
        if b.NOTES_END in text:
            head, _, tail = text.rpartition(b.NOTES_END)
            text = f"{head.rstrip()}\n\n{section}{b.NOTES_END}{tail}"
        else:
            text = f"{text.rstrip()}\n\n{section}"
    out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
