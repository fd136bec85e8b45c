"""The JSON the API answers with: the records' fields, named like the control tables' columns
(the same as the CLI's ``--json``), timestamps in ISO 8601 UTC."""

from __future__ import annotations

from typing import Any

from highmark.models import JobRecord, RunRecord, _jsonable


def job_json(job: JobRecord, run: RunRecord | None) -> dict[str, Any]:
    """A row of ``etl_jobs`` with its last run (``highmark jobs --json``)."""
    data = {f: _jsonable(getattr(job, f)) for f in job.__dataclass_fields__}
    data["last_run_id"] = run.run_id if run else None
    data["last_run_status"] = run.run_status.value if run else None
    data["last_run_started_at"] = _jsonable(run.started_at) if run else None
    return data


def status_json(job: JobRecord, run: RunRecord | None) -> dict[str, Any]:
    """The latest run of a job (``highmark status --json``)."""
    return {
        "job_id": job.job_id,
        "job_name": job.job_name,
        "load_type": job.load_type,
        "run_id": run.run_id if run else None,
        "run_status": run.run_status.value if run else None,
        "started_at": _jsonable(run.started_at) if run else None,
        "finished_at": _jsonable(run.finished_at) if run else None,
        "rows_written": run.rows_written if run else None,
        "rows_updated": run.rows_updated if run else None,
        "rows_deleted": run.rows_deleted if run else None,
        "rows_rejected": (run.rows_rejected or 0) if run else None,
        "error_message": run.error_message if run else None,
    }


def run_json(run: RunRecord) -> dict[str, Any]:
    """A row of ``etl_job_runs`` (``highmark runs --json``)."""
    return run.to_json()
