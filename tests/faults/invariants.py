"""What every fault test checks after the harm is done, whatever the harm was.

* the target equals the source by primary key and every column (or, while a run is interrupted, a
  prefix of the source in key order and nothing else);
* the watermark never moves backward (:class:`MarkLog`, checked after every run);
* no row is counted twice across a crash and its resume (:func:`runs` gives every run's counts);
* no secret appears in any output (:func:`assert_no_secret`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import Engine

from highmark import Project
from highmark.models import RunRecord, Watermark, WatermarkRecord
from tests.helpers import snapshot

JOB = "orders_sync"
SOURCE = "orders"
TARGET = "orders_copy"
# The local PostgreSQL trusts its clients and ignores passwords: every PostgreSQL URL of a fault
# test carries this one, which no output of highmark may ever show.
PG_PASSWORD = "Tru5tIgn0red-pw"


def with_password(url: str) -> str:
    """``url`` with PG_PASSWORD in it, if it is a password-less PostgreSQL URL."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PG_PASSWORD}@", 1)


def job_spec(**overrides: Any) -> dict[str, Any]:
    """The fault tests' job: orders -> orders_copy, keyset on (updated_at, id), batches of 3."""
    spec: dict[str, Any] = {
        "load_type": "incremental",
        "source": {"connection": "src", "table": SOURCE},
        "target": {"connection": "dst", "table": TARGET},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "soft_delete": {"column": "deleted_at", "mode": "mark"},
        "batch_size": 3,
    }
    spec.update(overrides)
    return spec


def write_job(
    write_project: Callable[..., Path],
    url: str,
    *,
    control: str | None = None,
    target_url: str | None = None,
    **job: Any,
) -> Path:
    """A project with one job; source, target and control on ``url`` unless told otherwise."""
    return write_project(
        control=with_password(control or url),
        connections={"src": with_password(url), "dst": with_password(target_url or url)},
        jobs={JOB: job_spec(**job)},
    )


@contextmanager
def reaped(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Whatever happens in the block, the child ends and its pipes are closed (no warnings)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def runs(project: Project) -> list[RunRecord]:
    """Every run of the job, oldest first."""
    return list(reversed(project.runs(JOB, limit=None)))


def key_order(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["updated_at"], r["id"]))


def assert_target_equals_source(source: Engine, target: Engine | None = None) -> None:
    """Same primary keys, same value in every column."""
    want = {r["id"]: r for r in snapshot(source, SOURCE)}
    have = {r["id"]: r for r in snapshot(target or source, TARGET)}
    missing = sorted(want.keys() - have.keys())
    extra = sorted(have.keys() - want.keys())
    different = sorted(k for k in want.keys() & have.keys() if want[k] != have[k])
    assert not (missing or extra or different), (
        f"target != source: missing {missing}, extra {extra}, different {different}"
    )


def assert_target_is_prefix(source: Engine, target: Engine | None = None) -> int:
    """The target holds a prefix of the source in key order, each row whole, and nothing else.

    Returns the length of the prefix.
    """
    expected = key_order(snapshot(source, SOURCE))
    actual = key_order(snapshot(target or source, TARGET))
    assert actual == expected[: len(actual)], "the target is not a prefix of the source"
    return len(actual)


def assert_no_secret(secrets: Iterable[str], *texts: str) -> None:
    """None of ``secrets``, nor their URL-encoded forms, occurs in any of ``texts``."""
    forms = {form for s in secrets for form in (s, quote(s, safe=""), quote_plus(s))}
    for i, text in enumerate(texts):
        for form in forms:
            assert form not in text, f"secret {form!r} leaked in output #{i}: {text[:2000]}"


def stored_text(project: Project) -> str:
    """Everything the control tables hold about the job, as text."""
    record = project.watermark(JOB)
    return "\n".join(
        [
            *(repr(run) for run in project.runs(JOB, limit=None)),
            *(repr(job) for job in project.jobs()),
            repr(record),
            repr(project.checkpoint(JOB)),
        ]
    )


def assert_nothing_leaked(project: Project, *outputs: str) -> None:
    """The PostgreSQL password is in no output of highmark and nowhere in the control tables."""
    assert_no_secret([PG_PASSWORD], *outputs, stored_text(project))


class MarkLog:
    """The committed watermark after each run: it must never move backward."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.marks: list[Watermark | None] = []

    def check(self) -> WatermarkRecord | None:
        record = self.project.watermark(JOB)
        mark = record.watermark() if record is not None else None
        previous = next((m for m in reversed(self.marks) if m is not None), None)
        if previous is not None:
            assert mark is not None, "the watermark was lost"
            assert mark >= previous, f"the watermark moved backward: {previous} -> {mark}"
        self.marks.append(mark)
        return record
