"""The issues of each project, newest update first, into ``<prefix>issues``; resumable page by
page with the search's ``nextPageToken``.

Each project is one search (highmark/connectors/jira/issues.py builds its JQL): issues updated at
or after the project's mark, in the user's time zone, to the minute. A page is written in one
target transaction, then checkpointed in one save with the token of the next page (or as the
project's last); a resumed run asks for that page again with the same JQL. A token Jira no longer
takes (it expires after 7 days) starts the project's search over from its mark: nothing was
committed past it. A token that comes back within one search would page forever: the run stops.
The mark committed per project is the greatest ``updated`` loaded, kept ``lag`` behind Jira's
clock when the search began, so an issue the search index had not caught up with is found by a
later run. A full refresh first removes the issues Jira no longer has (sweep.py).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from highmark import failpoints
from highmark.checkpoint import parse_checkpoint
from highmark.connectors.jira.api import JiraApi
from highmark.connectors.jira.checkpoint import JiraCheckpoint
from highmark.connectors.jira.config import JiraConnection, JiraJobSpec
from highmark.connectors.jira.issues import issue_row, search_jql, user_zone
from highmark.connectors.jira.sweep import sweep_project
from highmark.connectors.state import bounded_marks, save_state
from highmark.destinations.entities import EntityChanges
from highmark.destinations.record_bisect import handle_refused, write_records
from highmark.destinations.records import RecordWriter
from highmark.errors import ApiError, SourceError
from highmark.models import Counts, MarkUpdate

if TYPE_CHECKING:
    from highmark.config import ProjectConfig
    from highmark.movers.base import RunContext

log = logging.getLogger(__name__)


class JiraMover:
    def __init__(self, config: ProjectConfig, job: JiraJobSpec) -> None:
        self.config = config
        self.job = job
        connection = config.connections[job.source.connection]
        assert isinstance(connection, JiraConnection)
        self.connection = connection
        self.api: JiraApi | None = None
        self.writer: RecordWriter | None = None

    def move(self, ctx: RunContext) -> list[MarkUpdate]:
        self.ctx = ctx
        job, connection = self.job, self.connection
        self.api = JiraApi(
            job.source.connection, connection.url, connection.email, connection.token,
            sleep=ctx.sleep,
        )  # fmt: skip
        ctx.set_phase("connecting")
        self.zone = user_zone(self.api.myself())
        self.writer = job.record_writer(self.config)
        ctx.set_phase("preparing target")
        self.writer.prepare()
        for note in self.writer.prepared:
            ctx.note(note)
        for change in self.writer.schema_changes:
            ctx.schema_changed(change)
        self.state = self._resume()
        projects = ", ".join(job.source.projects)
        verb = "resuming" if self.state.recovery_mode else "syncing"
        ctx.started(f"{verb} issues of {projects} (JQL dates in {self.zone})")
        for project in job.source.projects:
            if project not in self.state.projects_processed:
                self._sync_project(project)
        return self._marks()

    def close(self) -> None:
        for part in (self.api, self.writer):
            if part is not None:
                part.close()

    def _resume(self) -> JiraCheckpoint:
        data = self.ctx.previous_checkpoint
        fresh = JiraCheckpoint(
            run_id=self.ctx.run_id,
            full_refresh=self.ctx.full_refresh,
            max_results=self.job.source.max_results,
        )
        if not data:
            return fresh
        previous = parse_checkpoint(self.job.job_id, JiraCheckpoint, data)
        if previous.full_refresh != self.ctx.full_refresh:
            kind = "a full refresh" if previous.full_refresh else "an incremental run"
            note = f"the checkpoint of run {previous.run_id} ({kind}) was discarded"
            log.warning("job %s: %s", self.job.job_id, note)
            self.ctx.note(note)
            return fresh
        return previous.model_copy(
            update={
                "run_id": self.ctx.run_id,
                "recovery_mode": True,
                "max_results": self.job.source.max_results,
            }
        )

    # ------------------------------------------------------------------ a project

    def _sync_project(self, project: str) -> None:
        ctx, state = self.ctx, self.state
        mark = ctx.marks.get(project)
        floor = None if ctx.full_refresh or mark is None else mark.last_value_timestamp
        jql = search_jql(project, floor, self.zone, self.job.source.jql)
        resuming = state.current_project == project and state.last_jql == jql
        token = state.next_page_token if resuming else None
        if state.current_project == project and not resuming:
            ctx.note(f"{project}: the search changed since the checkpoint; read from the mark")
        if ctx.full_refresh and token is None:
            self._sweep(project, search_jql(project, None, self.zone, self.job.source.jql))
        self._save(
            current_project=project, last_jql=jql, last_sync_date=floor, next_page_token=token
        )
        source = self.job.source
        sent: set[str] = set()  # the tokens of this search: one coming back would never end
        # The next page is fetched while this one is written (its token comes with this page):
        # a run waits for Jira or for the target, not for one after the other.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="highmark-jira")
        ahead: Future[dict[str, Any]] | None = None
        try:
            while True:
                ctx.check()
                ctx.set_phase("reading")
                asked = token
                try:
                    if ahead is not None:
                        page = ahead.result()
                    else:
                        page = self._api.search(jql, source.fields, source.max_results, asked)
                except ApiError as exc:
                    ahead = None
                    if asked is None or exc.status != 400:
                        raise
                    # An expired or unknown page token: nothing past the mark was committed, so
                    # the search starts over from it (pages written again are upserts).
                    ctx.note(f"{project}: the page token was refused ({exc}); searched again")
                    token = None
                    sent.clear()
                    self._save(next_page_token=None)
                    continue
                ahead = None
                if asked is not None:
                    sent.add(asked)
                bounds = self.state.project_bounds
                if project not in bounds:
                    bounds = {**bounds, project: self._api.now() - self.job.lag}
                token = page.get("nextPageToken") or None
                done = bool(page.get("isLast")) or not token
                if not done and token in sent:
                    raise SourceError(
                        f"jira: the search of {project} came back to a page it had served (the "
                        f"same nextPageToken after {len(sent) + 1} pages): stopped rather than "
                        "loop",
                        retryable=True,
                        project=project,
                    )
                # The page's checkpoint, saved once it is written: where the next page starts,
                # or that the project is done.
                progress: dict[str, Any] = {"project_bounds": bounds, "next_page_token": None}
                if done:
                    progress["projects_processed"] = [*self.state.projects_processed, project]
                    progress["current_project"] = None
                else:
                    progress["next_page_token"] = token
                    args = (jql, source.fields, source.max_results, token)
                    ahead = pool.submit(self._api.search, *args)
                self._write_page(project, page.get("issues") or [], progress)
                if done:
                    break
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _sweep(self, project: str, jql: str) -> None:
        """Before a full refresh searches the project again: remove what Jira no longer has."""
        self.ctx.set_phase("listing ids")
        removed = sweep_project(self._api, self._writer, project, jql, self.ctx.check)
        if removed:
            self.ctx.add(Counts(0, 0, 0, removed), detail=f"{project}: {removed} removed")
            self.ctx.note(f"{project}: {removed} issues no longer in Jira's search removed")

    def _write_page(
        self, project: str, issues: list[dict[str, Any]], progress: dict[str, Any]
    ) -> None:
        rows = [issue_row(issue, project) for issue in issues]
        self.ctx.set_phase("writing")
        if rows:
            self.ctx.set_record_hint({"project": project, "first_issue": rows[0]["key"]})
        written = write_records(self._writer, [EntityChanges("issues", rows)], check=self.ctx.check)
        failpoints.reach("after_target_commit")
        total = self.state.total_issues_processed + len(rows)
        counts = written.counts
        self.ctx.add(
            Counts(len(rows), counts.rows_written, counts.rows_updated, counts.rows_deleted),
            detail=f"{project}: {total} issues",
        )
        handle_refused(self.ctx, self.job.on_bad_rows, self._writer, written.refused)
        marks = dict(self.state.project_marks)
        for row in rows:
            updated: datetime | None = row["updated"]
            if updated is not None and (project not in marks or updated > marks[project]):
                marks[project] = updated
        self._save(
            total_issues_processed=total,
            last_issue_key=rows[-1]["key"] if rows else self.state.last_issue_key,
            project_marks=marks,
            **progress,
        )

    @property
    def _api(self) -> JiraApi:
        assert self.api is not None
        return self.api

    @property
    def _writer(self) -> RecordWriter:
        assert self.writer is not None
        return self.writer

    # ------------------------------------------------------------------ state

    def _save(self, **changes: Any) -> None:
        self.state = save_state(self.ctx, self.state, **changes)

    def _marks(self) -> list[MarkUpdate]:
        state = self.state
        return bounded_marks(
            self.job.source.projects, state.project_marks, state.project_bounds,
            self.job.mark_column,
        )  # fmt: skip
