"""Entra ID users, groups and memberships by Graph delta rounds, into ``<prefix>users``,
``groups`` and ``group_members``; resumable page by page.

A run makes one round per delta query: ``users``, then ``groups`` (which brings the memberships).
A round starts from the delta link the last complete round ended with (``incremental``), or, with
none, from the plain query (``full``: the first run, ``--full-refresh``, or a resync). Each page is
written in one target transaction, then checkpointed with its ``@odata.nextLink``; a killed run
asks for that link again, and for no committed page. The round's last page brings its
``@odata.deltaLink``, which is checkpointed only once that page is in the target — and outlives the
run (:meth:`RunContext.keep_checkpoint`).

When Graph no longer takes a delta link (410 Gone, ``syncStateNotFound``, ``resyncRequired``:
expired after 7 days, or the tenant's state was reset), the round starts over in full. A full
round brings no tombstones for what was deleted meanwhile, so every row it reads is stamped with
the round's own stamp, and its last page removes (or marks) the tenant's rows stamped otherwise,
in the same transaction (mark-and-sweep). The run's notes say so. A link of the round in flight
that is refused restarts the round from its last delta link, when there is one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from highmark import failpoints
from highmark.checkpoint import parse_checkpoint
from highmark.connectors.classifiers import GRAPH_RESYNC_CODES
from highmark.connectors.msgraph import entities
from highmark.connectors.msgraph.api import GraphApi
from highmark.connectors.msgraph.checkpoint import MsGraphCheckpoint
from highmark.connectors.msgraph.config import MsGraphConnection, MsGraphJobSpec
from highmark.connectors.msgraph.pages import Page, groups_page, users_page
from highmark.connectors.rounds import round_stamp
from highmark.connectors.state import save_state
from highmark.destinations.record_bisect import handle_refused, write_records
from highmark.destinations.records import RecordWriter
from highmark.errors import ApiError
from highmark.models import Counts, MarkUpdate, Watermark, WatermarkType

if TYPE_CHECKING:
    from highmark.config import ProjectConfig
    from highmark.movers.base import RunContext

log = logging.getLogger(__name__)

# Full restarts of one round in one run before the error is the run's (a start refused).
MAX_RESTARTS = 2


class MsGraphMover:
    def __init__(self, config: ProjectConfig, job: MsGraphJobSpec) -> None:
        self.config = config
        self.job = job
        connection = config.connections[job.source.connection]
        assert isinstance(connection, MsGraphConnection)
        self.connection = connection
        self.tenant = connection.tenant()
        self.api: GraphApi | None = None
        self.writer: RecordWriter | None = None

    # ------------------------------------------------------------------ outline

    def move(self, ctx: RunContext) -> list[MarkUpdate]:
        self.ctx = ctx
        job = self.job
        self.api = GraphApi(job.source.connection, self.connection, sleep=ctx.sleep)
        self.writer = job.record_writer(self.config)
        ctx.set_phase("preparing target")
        self.writer.prepare()
        for note in self.writer.prepared:
            ctx.note(note)
        for change in self.writer.schema_changes:
            ctx.schema_changed(change)
        self.state = self._resume()
        ctx.started(self._describe())
        for entity in job.source.rounds():
            if entity not in self.state.rounds_processed:
                self._round(entity)
        self.ctx.keep_checkpoint(self.state.kept().to_json())
        return self._marks()

    def close(self) -> None:
        for part in (self.api, self.writer):
            if part is not None:
                part.close()

    def _resume(self) -> MsGraphCheckpoint:
        ctx = self.ctx
        fresh = MsGraphCheckpoint(run_id=ctx.run_id, full_refresh=ctx.full_refresh)
        if not ctx.previous_checkpoint:
            return fresh
        previous = parse_checkpoint(self.job.job_id, MsGraphCheckpoint, ctx.previous_checkpoint)
        kept = fresh.model_copy(
            update={
                "delta_token": previous.delta_token,
                "last_sync_timestamp": previous.last_sync_timestamp,
                "select": previous.select,
            }
        )
        interrupted = bool(
            previous.current_round or previous.rounds_processed or previous.next_link
        )
        if not interrupted:
            return kept  # a finished run's delta links: this run's rounds start from them
        if previous.full_refresh != ctx.full_refresh:
            log.warning(
                "job %s: discarding the rounds in flight of run %s", self.job.job_id,
                previous.run_id,
            )  # fmt: skip
            return kept
        log.info("job %s: resuming run %s's rounds", self.job.job_id, previous.run_id)
        return previous.model_copy(update={"run_id": ctx.run_id, "recovery_mode": True})

    def _describe(self) -> str:
        verb = "resuming" if self.state.recovery_mode else "syncing"
        kinds = []
        for entity in self.job.source.rounds():
            full = (
                entity in self.state.full_rounds
                or self.ctx.full_refresh
                or entity not in self.state.delta_token
            )
            kinds.append(f"{entity} ({'full' if full else 'delta'})")
        return f"{verb} {', '.join(self.job.source.entities)} of tenant {self.tenant}: " + (
            ", ".join(kinds)
        )

    # ------------------------------------------------------------------ a round

    def _round(self, entity: str) -> None:
        ctx, state = self.ctx, self.state
        select = self._select(entity)
        link = state.next_link.get(entity)
        resumed = link is not None  # a link from an earlier run: Graph may have forgotten it
        if link is not None:
            self._save(current_round=entity)
        else:
            token = None if ctx.full_refresh else state.delta_token.get(entity)
            if token is not None and self.state.select.get(entity) != select:
                ctx.note(f"{entity}: the properties tracked changed; a full round reads them all")
                token = None
            link = token if token is not None else self._start_full(entity)
            self._save(current_round=entity, next_link={**self.state.next_link, entity: link})
        restarts = 0
        while True:
            ctx.check()
            ctx.set_phase("reading")
            try:
                page = self._api.page(link)
            except ApiError as exc:
                refused = resumed and exc.status in (400, 404)
                if not (_resync(exc) or refused) or restarts >= MAX_RESTARTS:
                    raise
                restarts += 1
                resumed = False
                link = self._restart(entity, link, exc, restarts)
                continue
            resumed = False
            next_link = page.get("@odata.nextLink")
            delta_link = page.get("@odata.deltaLink")
            if not next_link and not delta_link:
                raise ApiError(
                    f"msgraph: a page of {entity}/delta with neither a next nor a delta link",
                    retryable=True,
                    service="msgraph",
                )
            started = dict(self.state.round_started)
            started.setdefault(entity, self._api.now())
            progress = self._write(entity, page["value"], last=not next_link)
            if next_link:
                link = str(next_link)
                self._save(
                    next_link={**self.state.next_link, entity: link},
                    round_started=started,
                    **progress,
                )
                continue
            self._finish_round(entity, str(delta_link), started, select, progress)
            return

    def _start_full(self, entity: str, restart: int = 0) -> str:
        """Begin a full round of ``entity`` (the ``restart``-th in this run): its rows get a
        stamp of their own, so the sweep at its end takes nothing read before for seen."""
        stamp = round_stamp(self.ctx.run_id, restart)
        link = self._api.start_url(entity, self._select(entity))
        started = {k: v for k, v in self.state.round_started.items() if k != entity}
        self._save(
            current_round=entity,
            sync_type="full",
            full_rounds={**self.state.full_rounds, entity: stamp},
            next_link={**self.state.next_link, entity: link},
            round_started=started,
        )
        return link

    def _restart(self, entity: str, link: str, exc: ApiError, restart: int) -> str:
        why = exc.code or f"{exc.status}"
        token = self.state.delta_token.get(entity)
        if entity not in self.state.full_rounds and token is not None and link != token:
            self.ctx.note(
                f"{entity}: Graph refused the link of the round in flight ({why}); the round "
                "starts again from its last delta link"
            )
            self._save(next_link={**self.state.next_link, entity: token})
            return token
        what = (
            "the link of the full round in flight"
            if entity in self.state.full_rounds
            else ("the delta link")
        )
        self.ctx.note(
            f"{entity}: Graph refused {what} ({why}); a full resync reads every object and "
            "removes those no longer present"
        )
        self._save(delta_token={k: v for k, v in self.state.delta_token.items() if k != entity})
        return self._start_full(entity, restart)

    def _finish_round(
        self,
        entity: str,
        delta_link: str,
        started: dict[str, Any],
        select: str,
        progress: dict[str, Any],
    ) -> None:
        self._save(
            **progress,
            delta_token={**self.state.delta_token, entity: delta_link},
            select={**self.state.select, entity: select},
            next_link={k: v for k, v in self.state.next_link.items() if k != entity},
            full_rounds={k: v for k, v in self.state.full_rounds.items() if k != entity},
            rounds_processed=[*self.state.rounds_processed, entity],
            current_round=None,
            round_started=started,
            last_sync_timestamp=started[entity],
        )

    # ------------------------------------------------------------------ a page

    def _write(self, entity: str, value: list[dict[str, Any]], *, last: bool) -> dict[str, Any]:
        """Write a page in one transaction; the checkpoint changes it makes (saved by the
        caller with the page's link, in one control-store commit)."""
        ctx, state = self.ctx, self.state
        full = entity in state.full_rounds
        stamp = state.full_rounds.get(entity, round_stamp(ctx.run_id))
        sweep = full and last
        wanted = self.job.source.entities
        page: Page
        if entity == "users":
            page = users_page(value, self.tenant, stamp, sweep=sweep)
        else:
            page = groups_page(
                value, self.tenant, stamp, sweep=sweep, groups="groups" in wanted,
                members="group_members" in wanted, members_of=self._members_of,
            )  # fmt: skip
        ctx.set_phase("writing")
        if page.last_id is not None:
            ctx.set_record_hint({"round": entity, "last_id": page.last_id})
        written = write_records(self._writer, page.changes, check=ctx.check)
        counts = written.counts
        failpoints.reach("after_target_commit")
        received = page.objects + page.members
        processed = f"{entity}_processed"
        total = getattr(state, processed) + page.objects
        kind = "full round" if full else "delta round"
        detail = f"{entity}: {total} objects ({kind})" + ("; swept" if sweep else "")
        ctx.add(
            Counts(received, counts.rows_written, counts.rows_updated, counts.rows_deleted),
            detail=detail,
        )
        handle_refused(ctx, self.job.on_bad_rows, self._writer, written.refused)
        last_key = "last_user_id" if entity == "users" else "last_group_id"
        return {processed: total, last_key: page.last_id or getattr(state, last_key)}

    def _members_of(self, group_id: str) -> list[tuple[Any, ...]]:
        return list(self._writer.keys("group_members", {"group_id": group_id}))

    # ------------------------------------------------------------------ helpers

    def _select(self, entity: str) -> str:
        source = self.job.source
        extra = source.user_properties if entity == "users" else source.group_properties
        members = entity == "groups" and "group_members" in source.entities
        return entities.select(entity, list(extra), members=members)

    @property
    def _api(self) -> GraphApi:
        assert self.api is not None
        return self.api

    @property
    def _writer(self) -> RecordWriter:
        assert self.writer is not None
        return self.writer

    def _save(self, **changes: Any) -> None:
        self.state = save_state(self.ctx, self.state, **changes)

    def _marks(self) -> list[MarkUpdate]:
        updates = []
        for entity in self.job.source.rounds():
            started = self.state.round_started.get(entity)
            if entity in self.state.rounds_processed and started is not None:
                mark = Watermark(WatermarkType.TIMESTAMP, ts=started)
                updates.append(MarkUpdate(entity, self.job.mark_column, mark))
        return updates


def _resync(exc: ApiError) -> bool:
    """Graph no longer takes the link: a round must start over (shared/api-contracts.md §3.5)."""
    return exc.status == 410 or (exc.code or "").lower() in GRAPH_RESYNC_CODES
