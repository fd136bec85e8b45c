"""``highmark check``: can each job's source be read safely? One finding per check.

This first version checks what the run itself depends on: the source is reachable and has the
job's columns, and the safe upper bound can see the source's open transactions. (The reference's
full checklist — indexes, defaults, triggers — is to come.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from highmark.config import JobSpec, ProjectConfig
from highmark.errors import HighmarkError
from highmark.models import LoadType
from highmark.run import resolve
from highmark.sources.sql import SqlSource


class Level(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    job_id: str
    check: str
    level: Level
    detail: str
    fix: str = ""


def check_job(config: ProjectConfig, job: JobSpec) -> list[Finding]:
    source = SqlSource(resolve(config, job.source.connection), job.source, job)
    out: list[Finding] = []

    def add(check: str, level: Level, detail: str, fix: str = "") -> None:
        out.append(Finding(job.job_id, check, level, detail, fix))

    try:
        schema = source.describe()
    except HighmarkError as exc:
        add("source table", Level.FAIL, str(exc), "create the table or fix the job's source")
        return out
    add("source table", Level.PASS, f"{schema.qualified_name}: {len(schema.columns)} columns")
    if job.load_type is LoadType.FULL or job.watermark is None:
        return out
    spec = job.watermark
    try:
        bound = source.upper_bound(None)
    except HighmarkError as exc:
        add("upper bound", Level.FAIL, str(exc))
        return out
    if bound.blind:
        if spec.lag or spec.blind_bound == "allow":
            add("upper bound", Level.WARN, f"blind to open transactions ({bound.reason})",
                "grant pg_read_all_stats (PostgreSQL) or PROCESS (MySQL/MariaDB)")  # fmt: skip
        else:
            add("upper bound", Level.FAIL,
                f"blind to open transactions ({bound.reason}): runs are refused",
                "grant pg_read_all_stats (PostgreSQL) or PROCESS (MySQL/MariaDB), "
                "or set watermark.lag")  # fmt: skip
    else:
        add("upper bound", Level.PASS, f"{bound.high} ({bound.reason})")
    found = source.anomalies(bound.now)
    if found.null_rows:
        level = Level.FAIL if spec.on_null == "error" else Level.WARN
        add("null watermarks", level, f"{found.null_rows} row(s) with a NULL {spec.column}",
            f"set {spec.column} on those rows, or watermark.on_null: skip|include")  # fmt: skip
    if found.future_rows:
        add("future watermarks", Level.WARN,
            f"{found.future_rows} row(s) with {spec.column} after the source clock "
            f"(up to {found.future_max})", "correct the timestamps")  # fmt: skip
    return out
