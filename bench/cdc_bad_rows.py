"""What bad rows cost a CDC job: applying N changes with 10 refused against the same N with none.

``.venv/bin/python bench/cdc_bad_rows.py [--changes N] [--repeat R]``

PostgreSQL → PostgreSQL, one throwaway database. For each load a fresh source table and CDC job
(its own slot) take a snapshot of nothing; then N rows are inserted at the source, in
transactions of ``BATCH_SIZE`` rows, and one timed ``Project.run`` applies them (the log read,
the change sets applied, ``on_bad_rows: quarantine``). In the bad load 10 rows, spread over 10
change sets, have a negative amount, which the target's ``CHECK (amount >= 0)`` refuses: each
of those sets is bisected. Loads alternate (clean, bad, clean, bad…); the report gives the
medians, their ratio, and what the bad load wrote and quarantined (checked: N - 10 and 10).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_rows import BAD_ROWS, BATCH_SIZE, _database, _drop, _target

from highmark import Project, RunStatus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="bench/RESULTS-cdc-bad-rows.md")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"clean": [], "bad": []}
    outcome: dict[str, tuple[int, int]] = {}
    with _database("postgresql") as url, tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            for kind in ("clean", "bad"):
                seconds, outcome[kind] = _load(url, Path(tmp) / f"{kind}{rep}", args.changes, kind)
                times[kind].append(seconds)
                print(f"{kind} #{rep + 1}: {seconds:.1f} s", file=sys.stderr)
    assert outcome["clean"] == (args.changes, 0), outcome
    assert outcome["bad"] == (args.changes - BAD_ROWS, BAD_ROWS), outcome
    clean, bad = statistics.median(times["clean"]), statistics.median(times["bad"])
    report = "\n".join(
        [
            "# Bad rows on a CDC job: changes with 10 refused against the same with none",
            "",
            f"`{' '.join(['.venv/bin/python', *sys.argv])}` on {datetime.now(UTC):%Y-%m-%d %H:%M}"
            f" UTC, PostgreSQL → PostgreSQL, {args.changes:,} inserts in transactions of "
            f"{BATCH_SIZE:,}, `batch_size: {BATCH_SIZE}`, `on_bad_rows: quarantine`; medians of "
            f"{args.repeat} alternating runs (a shared machine: read the ratio).",
            "",
            "| clean (s) | 10 bad rows (s) | ratio | changes/s clean | written | quarantined |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {clean:.1f} | {bad:.1f} | {bad / clean:.2f} | {args.changes / clean:,.0f} | "
            f"{outcome['bad'][0]:,} | {outcome['bad'][1]} |",
        ]
    )
    Path(args.out).write_text(report + "\n")
    print(report)


def _load(url: str, folder: Path, changes: int, kind: str) -> tuple[float, tuple[int, int]]:
    """One CDC job's run over ``changes`` inserts (10 bad in the bad load): seconds, outcome."""
    source, target = f"s_{folder.name}", f"t_{folder.name}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {source} (id BIGINT PRIMARY KEY, customer VARCHAR(100) NOT NULL, "
                "amount NUMERIC(12, 2) NOT NULL, updated_at TIMESTAMPTZ NOT NULL)"
            )
        )
    _target(url, target)
    project = _project(folder, url, source, target)
    assert project.run("load").run_status is RunStatus.SUCCESS  # the snapshot of nothing
    bad = (
        [changes * (2 * k + 1) // (2 * BAD_ROWS) for k in range(BAD_ROWS)] if kind == "bad" else []
    )
    for start in range(1, changes + 1, BATCH_SIZE):
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO {source} SELECT i, 'customer ' || i, "
                    "CASE WHEN i = ANY(CAST(:bad AS bigint[])) THEN -1 ELSE i % 1000 + 0.25 END, "
                    "timestamptz '2024-01-01' + i * interval '1 second' "
                    "FROM generate_series(CAST(:start AS bigint), CAST(:end AS bigint)) AS i"
                ),
                {"bad": bad, "start": start, "end": min(start + BATCH_SIZE - 1, changes)},
            )
    started = time.perf_counter()
    run = project.run("load")
    seconds = time.perf_counter() - started
    assert run.run_status is RunStatus.SUCCESS, run.error_message
    project.cdc_drop("load")
    _drop(url, target)
    _drop(url, source)
    engine.dispose()
    return seconds, (run.rows_written, run.rows_rejected or 0)


def _project(folder: Path, url: str, source: str, target: str) -> Project:
    folder.mkdir(parents=True)
    document: dict[str, Any] = {
        "control": f"sqlite:///{folder / 'control.db'}",
        "connections": {"db": url},
        "on_bad_rows": "quarantine",
        "jobs": {
            "load": {
                "load_type": "cdc",
                "source": {"connection": "db", "table": source},
                "target": {"connection": "db", "table": target},
                "primary_key": ["id"],
                "batch_size": BATCH_SIZE,
                "cdc": {"slot": f"hm_bench_{folder.name}_{uuid.uuid4().hex[:8]}"},
            }
        },
    }
    path = folder / "highmark.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return Project.load(path)


if __name__ == "__main__":
    main()
