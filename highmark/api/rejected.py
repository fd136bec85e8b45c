"""The ``/api/v1`` routes of the bad-row quarantine (``etl_rejected_rows``): list a job's
quarantined rows a page at a time, and load them again (``highmark rejected`` and ``highmark
rejected retry``)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from highmark.api.app import note_outcome
from highmark.api.routes import ADMIN_ERRORS, ERRORS, MAX_LIMIT, Admin, ProjectDep, Reader

router = APIRouter(prefix="/api/v1")

PAGE_HEADERS = {
    "X-Total-Count": {
        "description": "How many rows the job has in quarantine (of `run_id`, if given).",
        "schema": {"type": "integer"},
    },
    "Link": {
        "description": 'The next (older) page, `<…?before=ID…>; rel="next"`, when there is one.',
        "schema": {"type": "string"},
    },
}


@router.get(
    "/jobs/{job_id}/rejected",
    summary="The job's quarantined bad rows, newest first (like `highmark rejected`)",
    description=(
        "Rows of `etl_rejected_rows`: the row's primary key (`source_record_id`), its data as "
        "read (masked columns as loaded: hashed), the target's error. Paged newest first: the "
        "`Link` header names the next page (`before` = the last `rejected_id` seen); "
        "`X-Total-Count` says how many there are."
    ),
    responses={**ERRORS, 200: {"headers": PAGE_HEADERS}},
)
def list_rejected(
    job_id: str,
    request: Request,
    project: ProjectDep,
    _: Reader,
    run_id: Annotated[int | None, Query(description="Only the rows this run quarantined.")] = None,
    before: Annotated[
        int | None, Query(ge=1, description="Only rows older than this `rejected_id`.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> JSONResponse:
    rows = project.rejected(
        job_id, limit=limit + 1, run_id=run_id, before=before, newest_first=True
    )
    page = rows[:limit]
    headers = {"X-Total-Count": str(project.store.count_rejected(job_id, run_id=run_id))}
    if len(rows) > limit:
        query = {"before": page[-1].rejected_id, "limit": limit}
        if run_id is not None:
            query["run_id"] = run_id
        headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    return JSONResponse([r.to_json() for r in page], headers=headers)


@router.post(
    "/jobs/{job_id}/rejected/retry",
    summary="Load the quarantined rows again, the target fixed (admin)",
    description=(
        "What `highmark rejected retry` does: each row of a SQL job is read again from the "
        "source by its primary key and merged into the target; each record of an API job is "
        "written again as it was kept. Rows that go in (`loaded`) and rows no longer in the "
        "source (`gone`) leave the quarantine; rows refused again (`refused`) stay, with the "
        "new error. `remaining`: how many the quarantine still holds."
    ),
    responses=ADMIN_ERRORS,
)
def retry_rejected(job_id: str, request: Request, project: ProjectDep, _: Admin) -> dict[str, Any]:
    outcome = project.retry_rejected(job_id)
    note_outcome(request, outcome.summary(job_id))
    return {
        "job_id": job_id,
        "loaded": outcome.loaded,
        "refused": outcome.refused,
        "gone": outcome.gone,
        "remaining": project.store.count_rejected(job_id),
    }
