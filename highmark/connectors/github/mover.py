"""Pull requests of each repository, newest update first, with their commits, reviews and
comments, into the target; resumable page by page, and inside a pull request's nested pages.

Each repository is scanned ``orderBy: UPDATED_AT DESC`` until a pull request older than the
repository's mark (GitHub has no "since" for pull requests). A page is written in one target
transaction, then checkpointed; a pull request whose children did not fit in its first page is
queued in the checkpoint and drained page by page. Cursors are keyset positions: a pull request
touched during the scan jumps over the cursor and is not seen by it, but its ``updatedAt`` is then
later than everything the scan loaded, so the next run's window (``>=`` the mark) finds it. The
mark committed per repository is the greatest ``updatedAt`` loaded, kept ``lag`` behind GitHub's
clock when the scan began.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from highmark import clock, failpoints
from highmark.checkpoint import parse_checkpoint
from highmark.connectors.github import queries
from highmark.connectors.github.api import CursorRefused, GitHubApi, QueryTooBig
from highmark.connectors.github.checkpoint import GitHubCheckpoint, PendingPullRequest
from highmark.connectors.github.config import GitHubConnection, GitHubJobSpec
from highmark.connectors.github.entities import CHILDREN, STAMP
from highmark.connectors.state import bounded_marks, save_state
from highmark.destinations.entities import EntityChanges
from highmark.destinations.record_bisect import handle_refused, write_records
from highmark.destinations.records import RecordWriter
from highmark.models import Counts, MarkUpdate

if TYPE_CHECKING:
    from highmark.config import ProjectConfig
    from highmark.movers.base import RunContext

log = logging.getLogger(__name__)

CURSOR_KEYS = {
    "commits": "last_commit_cursor",
    "reviews": "last_review_cursor",
    "comments": "last_comment_cursor",
}


class GitHubMover:
    def __init__(self, config: ProjectConfig, job: GitHubJobSpec) -> None:
        self.config = config
        self.job = job
        connection = config.connections[job.source.connection]
        assert isinstance(connection, GitHubConnection)
        self.connection = connection
        self.children = [c for c in CHILDREN if c in job.source.entities]
        self.api: GitHubApi | None = None
        self.writer: RecordWriter | None = None
        # What a page asks for: halved when GitHub cuts an answer short (resource limits).
        self.page_size = job.source.page_size
        self.nested_size = job.source.nested_page_size

    # ------------------------------------------------------------------ outline

    def move(self, ctx: RunContext) -> list[MarkUpdate]:
        self.ctx = ctx
        job = self.job
        self.api = GitHubApi(
            job.source.connection, self.connection.url, self.connection.token, sleep=ctx.sleep
        )
        self.writer = job.record_writer(self.config)
        ctx.set_phase("preparing target")
        self.writer.prepare()
        for note in self.writer.prepared:
            ctx.note(note)
        for change in self.writer.schema_changes:
            ctx.schema_changed(change)
        self.state = self._resume()
        ctx.started(self._describe())
        for repository in job.source.repositories:
            if repository not in self.state.repositories_processed:
                self._sync_repository(repository)
        return self._marks()

    def close(self) -> None:
        for part in (self.api, self.writer):
            if part is not None:
                part.close()

    def _resume(self) -> GitHubCheckpoint:
        data = self.ctx.previous_checkpoint
        fresh = GitHubCheckpoint(run_id=self.ctx.run_id, full_refresh=self.ctx.full_refresh)
        if not data:
            return fresh
        previous = parse_checkpoint(self.job.job_id, GitHubCheckpoint, data)
        if previous.full_refresh != self.ctx.full_refresh:
            kind = "a full refresh" if previous.full_refresh else "an incremental run"
            log.warning(
                "job %s: discarding the checkpoint of run %s (%s)",
                self.job.job_id, previous.run_id, kind,
            )  # fmt: skip
            return fresh
        log.info(
            "job %s: resuming run %s's checkpoint at %s",
            self.job.job_id, previous.run_id, previous.current_repository or "the next repository",
        )  # fmt: skip
        return previous.model_copy(update={"run_id": self.ctx.run_id, "recovery_mode": True})

    def _describe(self) -> str:
        repositories = ", ".join(self.job.source.repositories)
        verb = "resuming" if self.state.recovery_mode else "syncing"
        return f"{verb} {', '.join(self.job.source.entities)} of {repositories}"

    # ------------------------------------------------------------------ a repository

    def _sync_repository(self, repository: str) -> None:
        ctx, state = self.ctx, self.state
        resuming = state.current_repository == repository
        cursor = state.last_pr_cursor if resuming else None
        self._save(current_repository=repository, last_pr_cursor=cursor,
                   pending_prs=state.pending_prs if resuming else [])  # fmt: skip
        mark = ctx.marks.get(repository)
        floor = None if ctx.full_refresh or mark is None else mark.last_value_timestamp
        self._drain_pending(repository)
        owner, name = repository.split("/", 1)
        while True:
            ctx.check()
            ctx.set_phase("reading")
            try:
                data = self._api.query(
                    queries.page_query(self.children, with_pull_requests=self._with_prs),
                    {
                        "owner": owner,
                        "name": name,
                        "pageSize": self.page_size,
                        "after": cursor,
                        "nested": self.nested_size,
                    },
                )
            except QueryTooBig as exc:
                self._shrink(exc, nested_only=False)
                continue
            except CursorRefused:
                if cursor is None:
                    raise
                self._refused(f"the pull requests of {repository}")
                cursor = None
                continue
            if repository not in self.state.repository_bounds:
                bound = self._api.now() - self.job.lag
                self._save(repository_bounds={**self.state.repository_bounds, repository: bound})
            connection = data["repository"]["pullRequests"]
            nodes = [n for n in connection["nodes"] if n]
            kept = [n for n in nodes if floor is None or _ts(n["updatedAt"]) >= floor]
            self._write_page(repository, kept, connection["pageInfo"]["endCursor"])
            self._drain_pending(repository)
            if len(kept) < len(nodes) or not connection["pageInfo"]["hasNextPage"]:
                break
            cursor = connection["pageInfo"]["endCursor"]
        self._save(
            repositories_processed=[*self.state.repositories_processed, repository],
            current_repository=None,
            last_pr_cursor=None,
        )

    def _shrink(self, exc: QueryTooBig, *, nested_only: bool) -> None:
        """Ask for fewer pull requests per page, else for fewer nested records; raise ``exc``
        when both are down to one."""
        if not nested_only and self.page_size > 1:
            self.page_size = max(1, self.page_size // 2)
        elif self.nested_size > 1:
            self.nested_size = max(1, self.nested_size // 2)
        else:
            raise exc
        log.warning(
            "job %s: GitHub cut an answer short; asking %s pull requests and %s nested records "
            "at a time",
            self.job.job_id, self.page_size, self.nested_size,
        )  # fmt: skip

    def _refused(self, what: str) -> None:
        text = f"GitHub refused the saved cursor of {what}: reading them again from the start"
        log.warning("job %s: %s", self.job.job_id, text)
        self.ctx.note(text)

    @property
    def _with_prs(self) -> bool:
        return "pull_requests" in self.job.source.entities

    @property
    def _api(self) -> GitHubApi:
        assert self.api is not None
        return self.api

    def _write_page(self, repository: str, prs: list[dict[str, Any]], end_cursor: Any) -> None:
        """Write a page of pull requests with their first child pages in one transaction, then
        checkpoint it; queue the pull requests whose children need more pages."""
        run_id = self.ctx.run_id
        changes: list[EntityChanges] = []
        if self._with_prs:
            rows = [queries.pull_request_row(n, repository) for n in prs]
            changes.append(EntityChanges("pull_requests", rows))
        pending: dict[str, PendingPullRequest] = {}
        read = len(prs) if self._with_prs else 0  # records of the selected entities
        for connection in self.children:
            rows, complete = [], []
            for pr in prs:
                nested = pr[connection]
                rows += [
                    {**queries.child_row(connection, n, pr["id"], repository), STAMP: run_id}
                    for n in nested["nodes"]
                    if n
                ]
                if nested["pageInfo"]["hasNextPage"]:
                    entry = pending.get(pr["id"]) or PendingPullRequest(
                        node_id=pr["id"], sync_run_id=run_id
                    )
                    pending[pr["id"]] = entry.model_copy(
                        update={
                            CURSOR_KEYS[connection]: nested["pageInfo"]["endCursor"],
                            f"{connection}_done": False,
                        }
                    )
                else:
                    complete.append(pr["id"])
            read += len(rows)
            changes.append(
                EntityChanges(connection, rows, replace_children_of=complete, stamp=run_id)
            )
        self.ctx.set_phase("writing")
        self.ctx.set_record_hint(
            {"repository": repository, "pull_request_ids": [p["id"] for p in prs][:5]}
        )
        written = write_records(self._writer, changes, check=self.ctx.check)
        failpoints.reach("after_target_commit")
        self.ctx.add(
            _with_read(written.counts, read),
            detail=f"{self.state.total_prs_processed + len(prs)} pull requests ({repository})",
        )
        handle_refused(self.ctx, self.job.on_bad_rows, self._writer, written.refused)
        greatest = max((_ts(p["updatedAt"]) for p in prs), default=None)
        marks = dict(self.state.repository_marks)
        if greatest is not None and (repository not in marks or greatest > marks[repository]):
            marks[repository] = greatest
        self._save(
            last_pr_cursor=end_cursor,
            pending_prs=list(pending.values()),
            total_prs_processed=self.state.total_prs_processed + len(prs),
            repository_marks=marks,
        )

    def _drain_pending(self, repository: str) -> None:
        """Read the remaining child pages of each queued pull request, one page per transaction
        and checkpoint; when a connection is read whole, its rows not seen again go."""
        while self.state.pending_prs:
            entry = self.state.pending_prs[0]
            for connection in self.children:
                while not getattr(entry, f"{connection}_done"):
                    entry = self._child_page(repository, entry, connection)
            self._save(pending_prs=self.state.pending_prs[1:])

    def _child_page(
        self, repository: str, entry: PendingPullRequest, connection: str
    ) -> PendingPullRequest:
        self.ctx.check()
        self.ctx.set_phase("reading")
        cursor = getattr(entry, CURSOR_KEYS[connection])
        try:
            data = self._api.query(
                queries.children_query(connection),
                {"id": entry.node_id, "nested": self.nested_size, "after": cursor},
            )
        except QueryTooBig as exc:
            self._shrink(exc, nested_only=True)
            return entry
        except CursorRefused:
            if cursor is None:
                raise
            # The stamp makes a restart safe: rows read again keep it, the last page replaces.
            self._refused(f"the {connection} of pull request {entry.node_id}")
            return entry.model_copy(update={CURSOR_KEYS[connection]: None})
        node = data.get("node")
        if not node:  # the pull request is gone: nothing more to read, and nothing to keep
            self._forget(repository, entry.node_id)
            done = entry.model_copy(update={f"{c}_done": True for c in self.children})
            self._save(pending_prs=[done, *self.state.pending_prs[1:]])
            return done
        nested = node[connection]
        complete = not nested["pageInfo"]["hasNextPage"]
        rows = [
            {
                **queries.child_row(connection, n, entry.node_id, repository),
                STAMP: entry.sync_run_id,
            }
            for n in nested["nodes"]
            if n
        ]
        self.ctx.set_phase("writing")
        self.ctx.set_record_hint({"repository": repository, "pull_request_id": entry.node_id})
        page = EntityChanges(
            connection,
            rows,
            stamp=entry.sync_run_id,
            replace_children_of=[entry.node_id] if complete else [],
        )
        written = write_records(self._writer, [page], check=self.ctx.check)
        failpoints.reach("after_target_commit")
        self.ctx.add(
            _with_read(written.counts, len(rows)),
            detail=f"{repository}: {connection} of {entry.node_id}",
        )
        handle_refused(self.ctx, self.job.on_bad_rows, self._writer, written.refused)
        entry = entry.model_copy(
            update={
                CURSOR_KEYS[connection]: nested["pageInfo"]["endCursor"],
                f"{connection}_done": complete,
            }
        )
        self._save(pending_prs=[entry, *self.state.pending_prs[1:]])
        return entry

    def _forget(self, repository: str, pr_id: str) -> None:
        """Remove a pull request deleted while its children were read, and the children of it
        already written: the target keeps no part of what the source no longer has."""
        changes = [EntityChanges(c, [], replace_children_of=[pr_id]) for c in self.children]
        if self._with_prs:
            changes.append(EntityChanges("pull_requests", deletes=[(pr_id,)]))
        self.ctx.set_phase("writing")
        written = write_records(self._writer, changes, check=self.ctx.check)
        self.ctx.add(written.counts, detail=f"{repository}: pull request {pr_id} removed")
        self.ctx.note(
            f"pull request {pr_id} of {repository} was deleted while its children were read: "
            f"its rows were removed ({written.counts.rows_deleted})"
        )

    @property
    def _writer(self) -> RecordWriter:
        assert self.writer is not None
        return self.writer

    # ------------------------------------------------------------------ state

    def _save(self, **changes: Any) -> None:
        pending = changes.get("pending_prs", self.state.pending_prs)
        head = pending[0] if pending else None
        self.state = save_state(
            self.ctx,
            self.state,
            **changes,
            current_pr_node_id=head.node_id if head else None,
            last_commit_cursor=head.last_commit_cursor if head else None,
            last_review_cursor=head.last_review_cursor if head else None,
            last_comment_cursor=head.last_comment_cursor if head else None,
        )

    def _marks(self) -> list[MarkUpdate]:
        state = self.state
        return bounded_marks(
            self.job.source.repositories, state.repository_marks, state.repository_bounds,
            self.job.mark_column,
        )  # fmt: skip


def _ts(text: str) -> datetime:
    return clock.ensure_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _with_read(counts: Counts, read: int) -> Counts:
    return Counts(read, counts.rows_written, counts.rows_updated, counts.rows_deleted)
