"""A PostgreSQL table's changes, read by logical decoding with the built-in ``pgoutput`` plugin.

One publication and one logical replication slot per job (``highmark_<job_id>`` by default). The
changes are read through SQL — ``pg_logical_slot_peek_binary_changes`` — because psycopg 3 does
not speak the streaming replication protocol: a peek decodes whole transactions from the slot's
confirmed position without consuming them, so nothing is lost if highmark dies before the target
commits. Once the target committed a set of transactions (and the checkpoint recorded it), the
slot is moved past them with ``pg_replication_slot_advance``; the next peek starts there, so a
backlog is decoded once, not once per batch.

Invariant: the slot's confirmed position never passes the position highmark recorded (the
checkpoint is saved before the slot moves). A slot found *ahead* of it was moved or re-created by
someone else, and changes may have been skipped: that is an error, not something to carry on from.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from highmark.config import ResolvedConnection, TableJobSpec
from highmark.db import get_engine
from highmark.errors import SourceError, one_line
from highmark.models import Refusal, RefusedRow
from highmark.sources import pgoutput
from highmark.sources.changes import ChangeSet, Key, LogPoint
from highmark.sources.conversion import CONVERSION_ERRORS, unreadable
from highmark.sources.sql import SqlSource
from highmark.sqlschema import TableSchema

log = logging.getLogger(__name__)

PLUGIN = "pgoutput"
# A transaction larger than this many batches is applied in parts (memory stays flat); the slot
# only moves past it once it is whole.
PARTIAL_FACTOR = 4
FETCH_ROWS = 5000


class PostgresChanges:
    """The change log of one job's source table on PostgreSQL (see the module docstring)."""

    def __init__(self, connection: ResolvedConnection, job: TableJobSpec) -> None:
        self.connection = connection
        self.job = job
        self.slot = job.slot_name
        self.publication = job.publication_name
        self.engine = get_engine(connection.url, "source")
        self.reader = SqlSource(connection, job.source, _plain(job))
        self._conn: Any = None
        self._confirmed: int | None = None
        self._relations: dict[int, _RelationPlan] = {}
        self._table_oid: int | None = None

    # ------------------------------------------------------------------ plumbing

    def _where(self) -> str:
        return f"source {self.job.source.table} on {self.connection.name}"

    @contextmanager
    def _errors(self, context: str) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            retryable = isinstance(exc, psycopg.OperationalError) or str(
                getattr(exc, "sqlstate", "") or ""
            ).startswith(("08", "57P", "40", "55P03", "53"))
            self._drop_connection()
            raise SourceError(
                f"{context} {self._where()}: {one_line(str(exc)) or type(exc).__name__}",
                retryable=retryable,
                driver_error=type(exc).__name__,
            ) from exc

    @property
    def conn(self) -> Any:
        """A psycopg connection of its own (autocommit), taken out of the engine's pool."""
        if self._conn is None:
            with self._errors("cannot connect to"):
                raw = self.engine.raw_connection()
                conn: Any = raw.driver_connection
                raw.detach()
                conn.rollback()
                conn.autocommit = True
                self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a broken connection is gone either way
                self._conn.close()
            self._conn = None

    def _one(self, query: str, *params: Any) -> Any:
        return self.conn.execute(query, params).fetchone()

    def close(self) -> None:
        self._drop_connection()

    def describe(self) -> TableSchema:
        return self.reader.describe()

    def _refresh_schema(self) -> TableSchema:
        self.reader = SqlSource(self.connection, self.job.source, _plain(self.job))
        return self.reader.describe()

    @property
    def qualified(self) -> str:
        schema = self.job.source.schema_name
        name = self.job.source.table_name
        return f'"{schema}"."{name}"' if schema else f'"{name}"'

    # ------------------------------------------------------------------ setting up

    def start(self) -> LogPoint:
        self.describe()
        with self._errors("cannot start change capture on"):
            self._require_logical()
            self._table_oid = self._oid()
            self._require_identity()
            self._ensure_publication()
            row = self._one(
                "SELECT active_pid, database = current_database(), database "
                "FROM pg_replication_slots WHERE slot_name = %s",
                self.slot,
            )
            if row is not None:
                self._require_ours(row[1], row[2])
                if row[0] is not None:
                    raise SourceError(
                        f"replication slot {self.slot} is in use by pid {row[0]}; stop what "
                        "reads it first",
                        retryable=True,
                    )
                log.info("job %s: dropping replication slot %s to start over", self.job.job_id,
                         self.slot)  # fmt: skip
                self.conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
            lsn_text, now = self._one(
                "SELECT lsn::text, clock_timestamp() "
                "FROM pg_create_logical_replication_slot(%s, %s)",
                self.slot,
                PLUGIN,
            )
        lsn = pgoutput.parse_lsn(lsn_text)
        self._confirmed = lsn
        return LogPoint(lsn, lsn_text, now)

    def _require_ours(self, ours: bool, database: str) -> None:
        """Slot names are cluster-wide: never touch another database's slot."""
        if not ours:
            raise SourceError(
                f"job {self.job.job_id}: replication slot {self.slot} belongs to database "
                f"{database}, not this one; name another with cdc.slot",
                retryable=False,
            )

    def _require_logical(self) -> None:
        (level,) = self._one("SHOW wal_level")
        if level != "logical":
            raise SourceError(
                f"{self._where()}: wal_level is {level}, change capture needs logical "
                "(ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL)",
                retryable=False,
            )

    def _oid(self) -> int:
        row = self._one("SELECT to_regclass(%s)::oid", self.qualified)
        if row is None or row[0] is None:
            raise SourceError(f"{self._where()}: the table does not exist", retryable=False)
        return int(row[0])

    def _require_identity(self) -> None:
        identity, has_pk = self._one(
            "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid "
            "AND i.indisprimary) FROM pg_class c WHERE c.oid = %s",
            self._table_oid,
        )
        if identity == "n" or (identity == "d" and not has_pk):
            raise SourceError(
                f"{self._where()}: the table has no replica identity, so its updates and deletes "
                "cannot be published (and would fail once it is in a publication); "
                f"ALTER TABLE {self.qualified} REPLICA IDENTITY FULL (or add a primary key)",
                retryable=False,
            )

    def _ensure_publication(self) -> None:
        row = self._one("SELECT 1 FROM pg_publication WHERE pubname = %s", self.publication)
        if row is None:
            self.conn.execute(f'CREATE PUBLICATION "{self.publication}" FOR TABLE {self.qualified}')
            return
        member = self._one(
            "SELECT 1 FROM pg_publication_rel WHERE prpubid = "
            "(SELECT oid FROM pg_publication WHERE pubname = %s) AND prrelid = %s",
            self.publication,
            self._table_oid,
        )
        if member is None:
            self.conn.execute(f'ALTER PUBLICATION "{self.publication}" ADD TABLE {self.qualified}')

    def resume(self, position: int) -> None:
        with self._errors("cannot read the replication slot of"):
            row = self._one(
                "SELECT confirmed_flush_lsn::text, wal_status, database = current_database(), "
                "database FROM pg_replication_slots WHERE slot_name = %s",
                self.slot,
            )
            self._table_oid = self._oid()
        if row is not None:
            self._require_ours(row[2], row[3])
        fix = f"re-snapshot with `highmark run {self.job.job_id} --full-refresh`"
        at = pgoutput.format_lsn(position)
        if row is None or row[1] == "lost":
            what = "is gone (dropped outside highmark?)" if row is None else "lost its WAL"
            raise SourceError(
                f"job {self.job.job_id}: replication slot {self.slot} {what}; the changes after "
                f"{at} cannot be read any more: {fix}",
                retryable=False,
                reason="slot_lost",
            )
        confirmed = pgoutput.parse_lsn(row[0])
        if confirmed > position:
            raise SourceError(
                f"job {self.job.job_id}: replication slot {self.slot} is at {row[0]}, past the "
                f"position highmark applied ({at}): it was moved or re-created outside "
                f"highmark and changes may have been skipped: {fix}",
                retryable=False,
                reason="slot_moved",
            )
        self._confirmed = confirmed

    def point(self, position: int, at: datetime | None) -> LogPoint:
        return LogPoint(position, pgoutput.format_lsn(position), at)

    def current(self) -> LogPoint:
        with self._errors("cannot read the WAL position of"):
            lsn_text, now = self._one("SELECT pg_current_wal_flush_lsn()::text, clock_timestamp()")
        return LogPoint(pgoutput.parse_lsn(lsn_text), lsn_text, now)

    def confirm(self, position: int) -> None:
        if self._confirmed is not None and position <= self._confirmed:
            return
        with self._errors("cannot advance the replication slot of"):
            self.conn.execute(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                (self.slot, pgoutput.format_lsn(position)),
            )
        self._confirmed = position

    def lag_bytes(self, position: int | None = None) -> int | None:
        with self._errors("cannot read the replication slot of"):
            row = self._one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) "
                "FROM pg_replication_slots WHERE slot_name = %s "
                "AND database = current_database()",
                self.slot,
            )
        return None if row is None or row[0] is None else int(row[0])

    def drop(self) -> list[str]:
        dropped: list[str] = []
        with self._errors("cannot drop the change capture of"):
            row = self._one(
                "SELECT active_pid, database = current_database(), database "
                "FROM pg_replication_slots WHERE slot_name = %s",
                self.slot,
            )
            if row is not None:
                self._require_ours(row[1], row[2])
                if row[0] is not None:
                    raise SourceError(
                        f"replication slot {self.slot} is in use by pid {row[0]} (a run of "
                        f"{self.job.job_id}?); cancel it first",
                        retryable=True,
                    )
                self.conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
                dropped.append(f"replication slot {self.slot}")
            if self._one("SELECT 1 FROM pg_publication WHERE pubname = %s", self.publication):
                self.conn.execute(f'DROP PUBLICATION "{self.publication}"')
                dropped.append(f"publication {self.publication}")
        return dropped

    # ------------------------------------------------------------------ reading

    def changes(self, after: LogPoint, upto: LogPoint, batch_size: int) -> Iterator[ChangeSet]:
        # A slot behind the recorded position (a run died after its checkpoint, before the slot
        # moved) holds only transactions the target has: let them go before reading.
        self.confirm(after.position)
        applied = after.position
        limit = max(batch_size, 100)
        while True:
            seen = 0
            rows = 0
            with self._peek(upto.position, limit) as messages:
                pending = ChangeSet()
                skipping = False
                at: datetime | None = None
                for data in messages:
                    rows += 1
                    message = pgoutput.decode(data)
                    if isinstance(message, pgoutput.Begin):
                        # Already applied (a run died after the target committed, before the
                        # slot moved): harmless to apply again, cheaper to skip.
                        skipping = message.final_lsn < applied
                        at = message.commit_time
                    elif isinstance(message, pgoutput.Relation):
                        self._relation(message, pending)
                    elif isinstance(message, pgoutput.Commit):
                        if skipping:
                            continue
                        seen += 1
                        applied = message.end_lsn
                        pending.transactions += 1
                        pending.end = LogPoint(
                            message.end_lsn,
                            pgoutput.format_lsn(message.end_lsn),
                            message.commit_time,
                        )
                        if len(pending) >= batch_size:
                            yield pending
                            pending = ChangeSet()
                    elif not skipping and at is not None:
                        self._change(message, pending, at)
                        if len(pending) >= PARTIAL_FACTOR * batch_size:
                            yield pending  # a part of one large transaction: end stays None
                            pending = ChangeSet()
                if pending.changes or pending.end is not None or pending.new_columns:
                    yield pending
            if rows < limit:
                return  # the peek reached the end (upto, or the WAL flushed so far)
            if seen == 0:
                raise SourceError(
                    f"{self._where()}: the replication slot {self.slot} returns only changes "
                    f"already applied (before {pgoutput.format_lsn(applied)})",
                    retryable=True,
                )

    @contextmanager
    def _peek(self, upto: int, limit: int) -> Iterator[Iterator[bytes]]:
        """The messages of whole transactions after the slot's confirmed position, up to
        ``upto``, streamed from a server-side cursor (the function's result is materialized on
        the server, so the slot is free again as soon as the first rows arrive)."""
        conn = self.conn
        with self._errors("cannot read the changes of"):
            conn.autocommit = False
            try:
                with conn.cursor(name="highmark_peek") as cursor:
                    cursor.itersize = FETCH_ROWS
                    cursor.execute(
                        "SELECT data FROM pg_logical_slot_peek_binary_changes("
                        "%s, %s::pg_lsn, %s, 'proto_version', '1', 'publication_names', %s)",
                        (self.slot, pgoutput.format_lsn(upto), limit, self.publication),
                    )
                    yield (bytes(row[0]) for row in cursor)
                conn.commit()
            finally:
                if not conn.closed:
                    conn.rollback()
                    conn.autocommit = True

    def _relation(self, message: pgoutput.Relation, pending: ChangeSet) -> None:
        if message.oid != self._table_oid:
            return
        schema = self.describe()
        # Columns the job leaves out (columns/exclude_columns) are never loaded: not new either.
        names = {c.name for c in message.columns if self.job.keeps(c.name)}
        if any(schema.find(n) is None for n in names):
            schema = self._refresh_schema()  # a column was added since the run started
            pending.new_columns.update(n for n in names if schema.find(n) is not None)
        self._relations[message.oid] = _RelationPlan(message, schema, self)

    def _change(self, message: pgoutput.Message, pending: ChangeSet, at: datetime) -> None:
        if isinstance(message, pgoutput.Truncate):
            if self._table_oid in message.relation_oids:
                pending.truncate(at)
            return
        oid = getattr(message, "relation_oid", None)
        plan = self._relations.get(oid) if oid is not None else None
        if plan is None:
            return  # another table of the publication
        if isinstance(message, pgoutput.Insert):
            row, missing, refusal = plan.row(message.new)
            _upsert(pending, plan.key(row), row, at, missing, refusal)
        elif isinstance(message, pgoutput.Update):
            old_key = plan.key(plan.row(message.old)[0]) if message.old is not None else None
            row, missing, refusal = plan.row(message.new, fallback=message.old)
            key = plan.key(row)
            if old_key is not None and old_key != key:
                pending.delete(old_key, at)  # the primary key itself changed
            _upsert(pending, key, row, at, missing, refusal)
        elif isinstance(message, pgoutput.Delete):
            pending.delete(plan.key(plan.row(message.old)[0]), at)


class _RelationPlan:
    """How the tuples of one relation become rows: text -> Python (psycopg's loaders, by type
    OID) -> canonical values (the source column's converter)."""

    def __init__(
        self, relation: pgoutput.Relation, schema: TableSchema, source: PostgresChanges
    ) -> None:
        from psycopg import DataError, pq
        from psycopg.adapt import Transformer

        self.unconvertible = (*CONVERSION_ERRORS, DataError)
        self.masked = source.job.masks
        transformer = Transformer(source.conn)
        self.columns: list[tuple[int, str, Any, Any]] = []
        for i, col in enumerate(relation.columns):
            info = schema.find(col.name)
            if info is None:
                continue  # left out by the job, or dropped since: the target keeps it as it is
            loader = transformer.get_loader(col.type_oid, pq.Format.TEXT)
            # A masked column's value is hashed here, before it leaves the source.
            self.columns.append((i, info.name, loader.load, source.reader.converter(info)))
        present = {name for _, name, _, _ in self.columns}
        self.absent = [c.name for c in schema.columns if c.name not in present]
        self.keys = [_found(schema, k) for k in source.job.primary_key]

    def row(
        self, values: pgoutput.TupleData | None, fallback: pgoutput.TupleData | None = None
    ) -> tuple[dict[str, Any], frozenset[str], Refusal | None]:
        """The row, the columns the log did not carry, and why a value could not be converted
        (None: every value was; else the row holds the text of the ones that were not)."""
        row: dict[str, Any] = dict.fromkeys(self.absent)
        missing: list[str] = []
        refusal: Refusal | None = None
        if values is None:
            return row, frozenset(), None
        for i, name, load, convert in self.columns:
            raw = values[i] if i < len(values) else None
            if raw is pgoutput.UNCHANGED:
                old = fallback[i] if fallback is not None and i < len(fallback) else None
                if old is None or old is pgoutput.UNCHANGED:
                    missing.append(name)
                    row[name] = None
                    continue
                raw = old
            if raw is None:
                row[name] = None
                continue
            failed: Exception | None = None
            try:
                value = load(raw)
            except self.unconvertible as exc:
                # The text, which a masked column's converter hashes (never shown) and any
                # other's refuses.
                value, failed = bytes(raw).decode("utf-8", errors="replace"), exc
            try:
                row[name] = convert(value) if convert is not None else value
            except self.unconvertible as exc:
                row[name], failed = value, exc
            if failed is not None and refusal is None and not self.masked(name):
                refusal = unreadable(name, row[name], failed)
        return row, frozenset(missing), refusal

    def key(self, row: dict[str, Any]) -> Key:
        return tuple(row[k] for k in self.keys)


def _upsert(
    pending: ChangeSet,
    key: Key,
    row: dict[str, Any],
    at: datetime,
    missing: frozenset[str],
    refusal: Refusal | None,
) -> None:
    if refusal is None:
        pending.upsert(key, row, at, missing)
    else:
        pending.refuse(key, RefusedRow(row, refusal))


def _found(schema: TableSchema, name: str) -> str:
    column = schema.find(name)
    if column is None:
        raise SourceError(f"primary key column {name!r} is not in {schema.qualified_name}")
    return column.name


def _plain(job: TableJobSpec) -> TableJobSpec:
    """The job as a plain table read (its soft-delete column may not exist at the source)."""
    return job.model_copy(update={"soft_delete": None, "watermark": None})
