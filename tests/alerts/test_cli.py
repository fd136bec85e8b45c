"""``highmark alerts list`` and ``highmark alerts check``, and ``highmark run`` with sinks that
fail, as real subprocesses on a SQLite project."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

from highmark.store.tables import etl_alerts
from tests.alerts.support import (
    JOB,
    TOKEN,
    Source,
    age_runs,
    full_job,
    refused_url,
    webhook_server,
    write_project,
)
from tests.cli.runner import assert_error, hm, hm_many
from tests.faults.invariants import assert_no_secret


def test_run_with_failing_sinks_then_alerts_list_and_check(
    tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    folder = tmp_path / "proj"
    engine = engine_for(f"sqlite:///{folder / 'data.db'}")
    with webhook_server() as hooks, webhook_server() as slow:
        slow.delay = 3.0
        write_project(
            folder / "highmark.yml",
            "sqlite:///data.db",
            jobs={JOB: full_job(freshness="1h")},
            alerts=[
                {"type": "webhook", "url": hooks.url(), "format": "slack"},
                {"type": "webhook", "url": refused_url()},
                {"type": "webhook", "url": slow.url("slow"), "timeout": "0.5s"},
            ],
        )
        outputs: list[str] = []
        failed = hm("run", JOB, cwd=folder, code=1)  # the source table is missing
        # Log lines say what the sinks did; the error is the run's, as without sinks.
        assert failed.err.splitlines()[-1].startswith(f"highmark: error: {JOB}: source table")
        assert "ConnectError: [Errno 111] Connection refused; next try at" in failed.err
        Source(engine)
        started = time.monotonic()
        recovered = hm("run", JOB, cwd=folder)  # exit 0, whatever the sinks did
        assert time.monotonic() - started < 10
        outputs += [failed.out, failed.err, recovered.out, recovered.err]
        assert [b["text"].split(":")[0] for b in hooks.bodies()] == [
            f"{JOB} failed (run 1)",
            f"{JOB} recovered",
        ]

        listed, failures, limited, table = hm_many(
            [
                ("alerts", "list", "--json"),
                ("alerts", "list", "--status", "failed", "--job", JOB, "--json"),
                ("alerts", "list", "--limit", "2", "--json"),
                ("alerts", "list"),
            ],
            folder,
        )
        rows = listed.json()
        assert len(rows) == 6
        assert all(set(row) == {c.name for c in etl_alerts.columns} for row in rows)
        assert [row["event"] for row in rows[:3]] == ["recovered"] * 3  # newest first
        assert sorted(row["status"] for row in rows) == ["failed"] * 4 + ["sent"] * 2
        assert all(row["created_at"].endswith("Z") for row in rows)
        assert {row["status"] for row in failures.json()} == {"failed"}
        assert len(failures.json()) == 4
        assert len(limited.json()) == 2
        assert "no answer within 0.5s" in table.out
        assert "ConnectError" in table.out
        unknown = hm("alerts", "list", "--job", "nope", cwd=folder, code=2)
        assert_error(unknown, 2, "nope")
        outputs += [listed.out, table.out]

        nothing = hm("alerts", "check", cwd=folder)
        assert "0 job(s) newly stale" in nothing.out

        age_runs(engine, JOB, 2 * 3600)
        check = hm("alerts", "check", cwd=folder)
        assert f"{JOB}: stale -> webhook slack 127.0.0.1:" in check.out
        assert ": sent" in check.out
        assert "1 job(s) newly stale; 3 alert(s) raised" in check.out
        assert hooks.bodies()[-1]["text"].startswith(f"{JOB} is stale: last success 2h")
        again = hm("alerts", "check", "--json", cwd=folder)
        assert again.json() == {"raised": [], "delivered": 0}
        outputs += [nothing.out, check.out, check.err, again.out]

    assert_no_secret([TOKEN], *outputs)
