"""The events alerts are made of: what a finished run calls for (``failed``,
``consecutive_failures``, ``recovered``, ``schema_changed``, ``rows_rejected``), and how their
messages are worded. Deciding which stale or lagging jobs to raise is in ``highmark.alerts``;
recording and delivering them in ``highmark.alerts.delivery``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from highmark.config import ProjectConfig
from highmark.errors import one_line
from highmark.models import RunRecord, RunStatus, _jsonable
from highmark.store.alerts import AlertStore, Streak
from highmark.store.store import ControlStore

MESSAGE_LIMIT = 500


@dataclass(frozen=True)
class Event:
    """An alert to raise, before it is fanned out to the sinks that want it."""

    job_id: str
    event: str
    dedup_key: str
    run_id: int | None
    message: str
    payload: dict[str, Any] = field(default_factory=dict)


def run_events(alert_store: AlertStore, config: ProjectConfig, record: RunRecord) -> list[Event]:
    job_id = record.job_id
    if record.run_status is RunStatus.SUCCESS:
        rejected = _rejected_events(record)
        streak = alert_store.failure_streak(job_id, upto_run_id=record.run_id - 1)
        if not streak.failures:
            return rejected
        message = f"{job_id} recovered: run {record.run_id} succeeded after {_failed_runs(streak)}"
        return [
            *rejected,
            Event(
                job_id=job_id,
                event="recovered",
                dedup_key=f"recovered:{job_id}:{streak.first_run_id}",
                run_id=record.run_id,
                message=message,
                payload={
                    "failures": streak.failures,
                    "first_failed_run_id": streak.first_run_id,
                    "last_failed_run_id": streak.last_run_id,
                },
            ),
        ]
    streak = alert_store.failure_streak(job_id, upto_run_id=record.run_id)
    if not streak.failures:
        return []
    error = clip(one_line(record.error_message or "no error message recorded"))
    facts = {
        "error_message": error,
        "failures": streak.failures,
        "first_failed_run_id": streak.first_run_id,
        "last_failed_run_id": streak.last_run_id,
    }
    events = [
        Event(
            job_id=job_id,
            event="failed",
            dedup_key=f"failed:{job_id}:{streak.first_run_id}",
            run_id=record.run_id,
            message=f"{job_id} failed (run {record.run_id}): {error}",
            payload=facts,
        )
    ]
    if streak.failures >= config.alerting.consecutive_failures:
        events.append(
            Event(
                job_id=job_id,
                event="consecutive_failures",
                dedup_key=f"consecutive_failures:{job_id}:{streak.first_run_id}",
                run_id=record.run_id,
                message=f"{job_id} failed {streak.failures} times in a row "
                f"(runs {streak.first_run_id} to {streak.last_run_id}); last error: {error}",
                payload={**facts, "threshold": config.alerting.consecutive_failures},
            )
        )
    return events


def schema_events(store: ControlStore, record: RunRecord) -> list[Event]:
    """One ``schema_changed`` event for the columns a run added, widened or found dropped."""
    from highmark.store.schema_changes import SchemaHistory

    changes = SchemaHistory(store).list(record.job_id, run_id=record.run_id)
    if not changes:
        return []
    said = "; ".join(c.change().describe().removeprefix("schema change: ") for c in changes)
    return [
        Event(
            job_id=record.job_id,
            event="schema_changed",
            dedup_key=f"schema_changed:{record.job_id}:{record.run_id}",
            run_id=record.run_id,
            message=f"{record.job_id} (run {record.run_id}): {said}",
            payload={"changes": [c.to_json() for c in changes]},
        )
    ]


def _rejected_events(record: RunRecord) -> list[Event]:
    if not record.rows_rejected:
        return []
    return [
        Event(
            job_id=record.job_id,
            event="rows_rejected",
            dedup_key=f"rows_rejected:{record.job_id}:{record.run_id}",
            run_id=record.run_id,
            message=f"{record.job_id}: run {record.run_id} quarantined {record.rows_rejected} bad "
            f"row(s) (highmark rejected {record.job_id})",
            payload={"rows_rejected": record.rows_rejected},
        )
    ]


def _failed_runs(streak: Streak) -> str:
    if streak.failures == 1:
        return f"1 failed run (run {streak.first_run_id})"
    return f"{streak.failures} failed runs (runs {streak.first_run_id} to {streak.last_run_id})"


def clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "…"


def iso(value: datetime) -> str:
    return str(_jsonable(value))


def human(delta: timedelta) -> str:
    """``3d 4h``, ``2h 5m``, ``7m 30s``, ``45s``."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in units if n][:2]
    return " ".join(shown) or "0s"
