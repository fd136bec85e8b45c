"""The GitHub job's ``checkpoint_data``: the reference's keys (shared/reference/003, "GitHub Job"),
plus what a resume needs that the reference leaves out.

- ``last_pr_cursor``: the pull-request page cursor after the last committed page of
  ``current_repository`` (a resume asks for the page after it).
- ``pending_prs``: the pull requests of the committed page whose commits, reviews or comments
  were longer than their first page, still to drain; each with where its next nested pages
  start. ``current_pr_node_id`` and ``last_commit_cursor`` / ``last_review_cursor`` /
  ``last_comment_cursor`` show the first of them (the one being drained), as the reference
  names them.
- ``repositories_processed``, ``current_repository``, ``batch_number``, ``total_prs_processed``,
  ``recovery_mode``: as the reference says.
- ``repository_marks``: the greatest ``updatedAt`` loaded per repository so far in the run, and
  ``repository_bounds``: GitHub's clock minus the job's ``lag`` when each scan began. The marks
  committed at success are the lesser of the two.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class PendingPullRequest(BaseModel):
    """A pull request whose commits, reviews or comments did not fit in its first page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node_id: str
    sync_run_id: int  # children seen since this run began the pull request carry its id
    last_commit_cursor: str | None = None
    last_review_cursor: str | None = None
    last_comment_cursor: str | None = None
    commits_done: bool = True
    reviews_done: bool = True
    comments_done: bool = True


class GitHubCheckpoint(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    last_pr_cursor: str | None = None
    current_pr_node_id: str | None = None
    last_commit_cursor: str | None = None
    last_review_cursor: str | None = None
    last_comment_cursor: str | None = None
    repositories_processed: list[str] = Field(default_factory=list)
    current_repository: str | None = None
    batch_number: int = 0
    total_prs_processed: int = 0
    recovery_mode: bool = False
    full_refresh: bool = False
    run_id: int | None = None
    pending_prs: list[PendingPullRequest] = Field(default_factory=list)
    repository_marks: dict[str, datetime] = Field(default_factory=dict)
    repository_bounds: dict[str, datetime] = Field(default_factory=dict)
    last_checkpoint_at: datetime | None = None

    def to_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True)
