"""Fabric workspaces and their items, a whole listing per run diffed against the target, into
``<prefix>workspaces`` and ``<prefix>items``; resumable page by page and workspace by workspace.

Fabric has no change feed and no modified timestamp (shared/api-contracts.md §4.4), so each run
lists everything: new ids are inserted, changed payloads updated (the writer compares them), and
what a *complete* listing no longer has is deleted (or marked). The workspaces are listed first:
when the listing's last page is in, the stored workspaces it lacks — and their items — go, in
the same transaction. Then each workspace's items are listed, each page written and checkpointed;
the listing's last page removes the workspace's items that were not read again (they carry
another run's stamp). A partial listing deletes nothing: a run stopped half-way, an error, or a
workspace whose items answer 403 (access revoked since it was listed: its items are kept, the
other workspaces are loaded, and the run then fails naming it; 404 — deleted since listed — is
only noted, the next listing settles it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from highmark import failpoints
from highmark.checkpoint import parse_checkpoint
from highmark.connectors.fabric.api import FabricApi
from highmark.connectors.fabric.checkpoint import FabricCheckpoint
from highmark.connectors.fabric.config import FabricConnection, FabricJobSpec
from highmark.connectors.fabric.entities import item_row, workspace_row
from highmark.connectors.rounds import round_stamp
from highmark.connectors.state import save_state
from highmark.destinations.entities import EntityChanges
from highmark.destinations.record_bisect import handle_refused, write_records
from highmark.destinations.records import RecordWriter
from highmark.errors import ApiError
from highmark.models import Counts, MarkUpdate, Watermark, WatermarkType

if TYPE_CHECKING:
    from highmark.config import ProjectConfig
    from highmark.movers.base import RunContext

log = logging.getLogger(__name__)


class FabricMover:
    def __init__(self, config: ProjectConfig, job: FabricJobSpec) -> None:
        self.config = config
        self.job = job
        connection = config.connections[job.source.connection]
        assert isinstance(connection, FabricConnection)
        self.connection = connection
        types = job.source.item_types
        # One type is filtered by Fabric; several are filtered here (the API takes one).
        self.server_type = types[0] if types and len(types) == 1 else None
        self.types = {t.lower() for t in types} if types else None
        wanted = job.source.workspaces
        self.wanted = {w.lower() for w in wanted} if wanted else None
        self.api: FabricApi | None = None
        self.writer: RecordWriter | None = None

    # ------------------------------------------------------------------ outline

    def move(self, ctx: RunContext) -> list[MarkUpdate]:
        self.ctx = ctx
        job = self.job
        self.api = FabricApi(job.source.connection, self.connection, sleep=ctx.sleep)
        self.writer = job.record_writer(self.config)
        ctx.set_phase("preparing target")
        self.writer.prepare()
        for note in self.writer.prepared:
            ctx.note(note)
        for change in self.writer.schema_changes:
            ctx.schema_changed(change)
        self.state = self._resume()
        verb = "resuming" if self.state.recovery_mode else "listing"
        ctx.started(f"{verb} Fabric workspaces and items of connection {job.source.connection}")
        if self.state.phase == "workspaces":
            self._list_workspaces()
        for workspace_id in list(self.state.workspaces_listed):
            done = self.state.datasets_processed
            if workspace_id not in done and workspace_id not in self.state.inaccessible:
                self._list_items(workspace_id)
        if self.state.inaccessible:
            self._fail_inaccessible()
        assert self.state.listing_started is not None
        mark = Watermark(WatermarkType.TIMESTAMP, ts=self.state.listing_started)
        return [MarkUpdate("workspaces", job.mark_column, mark)]

    def close(self) -> None:
        for part in (self.api, self.writer):
            if part is not None:
                part.close()

    def _resume(self) -> FabricCheckpoint:
        ctx = self.ctx
        previous_mark = ctx.marks.get("workspaces")
        fresh = FabricCheckpoint(
            run_id=ctx.run_id,
            last_sync_timestamp=previous_mark.last_value_timestamp if previous_mark else None,
        )
        if not ctx.previous_checkpoint:
            return fresh
        previous = parse_checkpoint(self.job.job_id, FabricCheckpoint, ctx.previous_checkpoint)
        if previous.listing_started is None:
            return fresh  # nothing was listed: start over
        log.info("job %s: resuming run %s's listing", self.job.job_id, previous.run_id)
        return previous.model_copy(update={"run_id": ctx.run_id, "recovery_mode": True})

    # ------------------------------------------------------------------ workspaces

    def _list_workspaces(self) -> None:
        ctx, api = self.ctx, self._api
        first = api.workspaces_url()
        link = self.state.continuation_uri
        resumed = link is not None
        while True:
            ctx.check()
            ctx.set_phase("reading")
            try:
                body = api.page(link or first)
            except ApiError as exc:
                if not (resumed and exc.status == 400):
                    raise
                ctx.note(f"workspaces: Fabric refused the continuation ({exc.code}); listed again")
                self._save(workspaces_listed={}, continuation_uri=None, continuation_token=None)
                link, resumed = None, False
                continue
            resumed = False
            started = self.state.listing_started or api.now()
            received = body["value"]
            kept = [w for w in received if self._wanted(str(w.get("id")))]
            listed = {**self.state.workspaces_listed}
            listed.update({str(w["id"]): str(w.get("displayName") or w["id"]) for w in kept})
            link = api.next_url(first, body)
            rows = [workspace_row(w) for w in kept]
            changes = [EntityChanges("workspaces", rows)]
            if link is None:
                gone = [key for key in self._writer.keys("workspaces") if key[0] not in listed]
                changes[0].deletes = gone
                stamp = round_stamp(self.ctx.run_id)
                changes.append(
                    EntityChanges("items", replace_children_of=[k[0] for k in gone], stamp=stamp)
                )
            last = rows[-1]["id"] if rows else None
            progress = self._write(changes, len(received), last, "workspaces")
            progress.update(listing_started=started, workspaces_listed=listed)
            if link is not None:
                self._save(
                    continuation_uri=link,
                    continuation_token=body.get("continuationToken"),
                    **progress,
                )
                continue
            self._note_missing(listed)
            self._save(
                **progress,
                phase="items",
                continuation_uri=None,
                continuation_token=None,
            )
            return

    def _wanted(self, workspace_id: str) -> bool:
        return self.wanted is None or workspace_id.lower() in self.wanted

    def _note_missing(self, listed: dict[str, str]) -> None:
        for workspace_id in self.job.source.workspaces or []:
            if workspace_id.lower() not in {w.lower() for w in listed}:
                self.ctx.note(
                    f"workspace {workspace_id} is not visible to connection "
                    f"'{self.job.source.connection}' (deleted, or the principal has no role in "
                    "it): its rows were removed"
                )

    # ------------------------------------------------------------------ items

    def _list_items(self, workspace_id: str) -> None:
        ctx, api, state = self.ctx, self._api, self.state
        name = state.workspaces_listed[workspace_id]
        resuming = state.workspace_id == workspace_id
        link = state.continuation_uri if resuming else None
        resumed = link is not None
        fresh = round_stamp(ctx.run_id)
        stamp = state.workspace_stamp if resuming and state.workspace_stamp else fresh
        # Saved with the first page: a workspace none of whose pages is in starts afresh.
        begun = {"workspace_id": workspace_id, "current_dataset": name}
        first = api.items_url(workspace_id, self.server_type)
        while True:
            ctx.check()
            ctx.set_phase("reading")
            try:
                body = api.page(link or first)
            except ApiError as exc:
                if resumed and exc.status == 400:
                    ctx.note(f"workspace {name}: Fabric refused the continuation ({exc.code}); "
                             "its items are listed again")  # fmt: skip
                    link, resumed = None, False
                    # A stamp of its own: items read before are not taken for seen.
                    stamp = round_stamp(ctx.run_id, 1)
                    continue
                if exc.retryable or exc.status not in (403, 404):
                    raise
                self._inaccessible(workspace_id, name, exc)
                return
            resumed = False
            received = body["value"]
            items = [i for i in received if self._kept_type(i)]
            link = api.next_url(first, body)
            rows = [item_row(i, workspace_id, stamp) for i in items]
            changes = EntityChanges(
                "items",
                rows,
                replace_children_of=[workspace_id] if link is None else [],
                stamp=stamp,
            )
            last = rows[-1]["id"] if rows else None
            written = self._write([changes], len(received), last, name)
            if link is not None:
                self._save(
                    **begun,
                    **written,
                    workspace_stamp=stamp,
                    continuation_uri=link,
                    continuation_token=body.get("continuationToken"),
                )
                continue
            self._save(
                **written,
                datasets_processed=[*self.state.datasets_processed, workspace_id],
                workspace_id=None,
                current_dataset=None,
                workspace_stamp=None,
                continuation_uri=None,
                continuation_token=None,
            )
            return

    def _kept_type(self, item: dict[str, Any]) -> bool:
        return self.types is None or str(item.get("type") or "").lower() in self.types

    def _inaccessible(self, workspace_id: str, name: str, exc: ApiError) -> None:
        """A workspace whose items could not be listed: nothing of it is deleted."""
        idle = {
            "workspace_id": None,
            "current_dataset": None,
            "workspace_stamp": None,
            "continuation_uri": None,
            "continuation_token": None,
        }
        if exc.status == 404:
            self.ctx.note(
                f"workspace {name} ({workspace_id}) was not found after it was listed (deleted "
                "meanwhile?): its items were kept until a listing confirms"
            )
            self._save(datasets_processed=[*self.state.datasets_processed, workspace_id], **idle)
            return
        self.ctx.note(f"workspace {name} ({workspace_id}): {exc}; its items were kept")
        self._save(inaccessible={**self.state.inaccessible, workspace_id: str(exc)}, **idle)

    def _fail_inaccessible(self) -> None:
        """End the run failed, naming the workspaces that refused their items; the next run
        lists everything again (nothing is left to resume)."""
        names = [f"{self.state.workspaces_listed.get(w, w)} ({w})" for w in self.state.inaccessible]
        first = next(iter(self.state.inaccessible.values()))
        self.ctx.save_checkpoint(FabricCheckpoint(run_id=self.ctx.run_id).to_json())
        count = len(names)
        raise ApiError(
            f"fabric: {count} workspace{'s' if count > 1 else ''} refused the listing of "
            f"{'their' if count > 1 else 'its'} items, which were kept (every other workspace "
            f"was loaded): {', '.join(names)}; {first}",
            retryable=False,
            service="fabric",
            status=403,
            workspaces=list(self.state.inaccessible),
        )

    # ------------------------------------------------------------------ writing

    def _write(
        self, changes: list[EntityChanges], received: int, last_id: str | None, where: str
    ) -> dict[str, Any]:
        """Write a page in one transaction; the checkpoint changes it makes (saved by the
        caller with the listing's continuation, in one control-store commit)."""
        ctx = self.ctx
        ctx.set_phase("writing")
        if last_id is not None:
            ctx.set_record_hint({"listing": where, "last_id": last_id})
        written = write_records(self._writer, changes, check=ctx.check)
        counts = written.counts
        failpoints.reach("after_target_commit")
        total = self.state.total_records_processed + received
        ctx.add(
            Counts(received, counts.rows_written, counts.rows_updated, counts.rows_deleted),
            detail=f"{where}: {total} records",
        )
        handle_refused(ctx, self.job.on_bad_rows, self._writer, written.refused)
        return {
            "total_records_processed": total,
            "last_record_id": last_id or self.state.last_record_id,
        }

    @property
    def _api(self) -> FabricApi:
        assert self.api is not None
        return self.api

    @property
    def _writer(self) -> RecordWriter:
        assert self.writer is not None
        return self.writer

    def _save(self, **changes: Any) -> None:
        self.state = save_state(self.ctx, self.state, **changes)
