"""The Jira job's ``checkpoint_data``: the reference's keys (shared/reference/003, "Jira Job") —
except ``start_at``: Atlassian removed the ``startAt`` search (``/rest/api/3/search``, CHANGE-2046)
and its successor pages with an opaque ``next_page_token``, kept here instead.

- ``last_sync_date``: the lower bound of the current project's search (the project's mark), and
  ``last_jql`` the search itself; ``next_page_token`` the page after the last committed one.
- ``projects_processed``, ``current_project``, ``last_issue_key``, ``batch_number``,
  ``total_issues_processed``, ``max_results``, ``recovery_mode``: as the reference says.
- ``project_marks``: the greatest ``updated`` loaded per project so far in the run, and
  ``project_bounds``: Jira's clock minus the job's ``lag`` when each search began. The marks
  committed at success are the lesser of the two.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class JiraCheckpoint(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    last_sync_date: datetime | None = None
    projects_processed: list[str] = Field(default_factory=list)
    current_project: str | None = None
    last_issue_key: str | None = None
    batch_number: int = 0
    total_issues_processed: int = 0
    last_jql: str | None = None
    max_results: int | None = None
    next_page_token: str | None = None
    recovery_mode: bool = False
    full_refresh: bool = False
    run_id: int | None = None
    project_marks: dict[str, datetime] = Field(default_factory=dict)
    project_bounds: dict[str, datetime] = Field(default_factory=dict)
    last_checkpoint_at: datetime | None = None

    def to_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True)
