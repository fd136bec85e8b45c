"""What ``highmark check`` reports: one finding per check, pass / warn / fail, with the fix."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
    sql: str = ""
