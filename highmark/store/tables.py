"""The control tables, as SQLAlchemy Core tables.

Column names, types and indexes follow the reference (shared/reference/000, 003). Columns highmark
adds beyond the reference are marked "extra" below. Migrations under ``migrations/`` create exactly
these tables; a test checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from highmark.clock import ensure_utc

VERSION_TABLE = "highmark_alembic_version"
# The newest migration under migrations/versions (a test checks they agree): a store at this
# revision needs no migration, which is known without importing Alembic.
HEAD_REVISION = "0007"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    PostgreSQL stores ``timestamptz``; MySQL/MariaDB ``DATETIME(6)`` holding UTC (microseconds kept,
    no 2038 limit); SQLite ISO text in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mysql":
            from sqlalchemy.dialects import mysql  # imported where used: ~90 ms

            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = ensure_utc(value)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return ensure_utc(value)


class _JSONDocument(TypeDecorator[Any]):
    """JSON, and JSONB on PostgreSQL (the checkpoint tools work on it in the database).

    A type rather than ``JSON().with_variant(postgresql.JSONB(), "postgresql")``: that needs the
    PostgreSQL dialect at import time, in every project (~30 ms of start-up on SQLite alone).
    """

    impl = JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))


# none_as_null: Python None is SQL NULL (an empty checkpoint), not the JSON literal null.
JSONDocument = _JSONDocument()
JSONDetails = JSON(none_as_null=True)

metadata = MetaData()

etl_jobs = Table(
    "etl_jobs",
    metadata,
    Column("job_id", String(100), primary_key=True),
    Column("job_name", String(255), nullable=False),
    Column("description", Text),
    Column("source_table", String(255)),
    Column("target_table", String(255)),
    Column("load_type", String(50), nullable=False),
    Column("schedule", String(100)),
    Column("is_active", Boolean, nullable=False, server_default=true(), default=True),
    Column("timeout_seconds", Integer, server_default="3600", default=3600),
    Column("retry_count", Integer, server_default="3", default=3),
    Column("created_at", UTCDateTime, server_default=func.current_timestamp()),
    Column("updated_at", UTCDateTime, server_default=func.current_timestamp()),
    Column("checkpoint_data", JSONDocument),
    # extra: the job's whole definition, so workers and reports can work from the database alone
    Column("definition", JSONDetails),
    # extra (scheduling): the zone the cron schedule is read in, the next fire time to enqueue,
    # and `highmark enable/disable`'s override of the file's is_active
    Column("schedule_timezone", String(64)),
    Column("next_due_at", UTCDateTime),
    Column("is_active_override", Boolean),
    # extra (backfills): the checkpoint of a backfill, kept apart from the regular runs' one so
    # that a backfill and the job's regular runs never resume or clear each other's
    Column("backfill_checkpoint", JSONDocument),
    Index("idx_etl_jobs_active", "is_active"),
    Index("idx_etl_jobs_due", "is_active", "next_due_at"),
)

etl_job_runs = Table(
    "etl_job_runs",
    metadata,
    Column(
        "run_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("job_id", String(100), ForeignKey("etl_jobs.job_id"), nullable=False),
    Column("run_status", String(50), nullable=False),
    Column("started_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("finished_at", UTCDateTime),
    Column("duration_seconds", Integer),
    Column("rows_read", BigInteger, server_default="0", default=0),
    Column("rows_written", BigInteger, server_default="0", default=0),
    Column("rows_updated", BigInteger, server_default="0", default=0),
    Column("rows_deleted", BigInteger, server_default="0", default=0),
    Column("watermark_start", UTCDateTime),
    Column("watermark_end", UTCDateTime),
    Column("error_message", Text),
    Column("error_details", JSONDetails),
    Column("triggered_by", String(100)),
    # extra: integer (and tiebreaker) parts of the watermarks, as in etl_watermarks
    Column("watermark_start_integer", BigInteger),
    Column("watermark_end_integer", BigInteger),
    # extra: who runs it, and whether it is alive
    Column("host", String(255)),
    Column("pid", Integer),
    Column("heartbeat_at", UTCDateTime),
    # extra: the fencing token of the process that owns the run; every write to a live run checks it
    Column("owner_token", String(64)),
    # extra: equals job_id while the run is live, NULL after: a unique key, so the database itself
    # refuses a second live run of one job (NULLs never collide, on every supported database)
    Column("live_job_id", String(100), unique=True),
    # extra: the window's upper bound and why it is where it is
    Column("upper_bound", String(64)),
    Column("upper_bound_reason", Text),
    # extra: what a user should know about a run that did not fail it (rows with a NULL or future
    # watermark, a held-back bound…): a JSON list of one-line notes
    Column("notes", JSONDetails),
    # extra (scheduling): the cron slot a scheduled run is for, its attempt (1 = first try), the
    # worker that started it, and a request to stop it (`highmark cancel`)
    Column("scheduled_for", UTCDateTime),
    Column("attempt", Integer),
    Column("worker_id", String(255)),
    Column("cancel_requested", Boolean, nullable=False, server_default=false(), default=False),
    # extra (backfills): a backfill's window {"from", "to"} (NULL: a regular run), and the job's id
    # while the backfill is live: unique, so a job has at most one live backfill besides its one
    # live regular run
    Column("backfill_window", JSONDetails),
    Column("live_backfill_job_id", String(100)),
    # extra (API): the Idempotency-Key of the request that started the run; unique, so a retried
    # request finds its run instead of starting another
    Column("idempotency_key", String(255)),
    # extra (bad rows): rows the run quarantined in etl_rejected_rows (on_bad_rows: quarantine)
    Column("rows_rejected", BigInteger, server_default="0", default=0),
    # One run per slot and attempt, whatever the timing (NULLs, i.e. manual runs, never collide).
    UniqueConstraint("job_id", "scheduled_for", "attempt", name="uq_etl_runs_slot_attempt"),
)
Index("idx_etl_runs_job", etl_job_runs.c.job_id, etl_job_runs.c.started_at.desc())
Index("idx_etl_runs_status", etl_job_runs.c.run_status, etl_job_runs.c.started_at)
# (unique indexes rather than constraints: SQLite cannot add a column with a UNIQUE constraint)
Index("uq_etl_runs_live_backfill_job_id", etl_job_runs.c.live_backfill_job_id, unique=True)
Index("uq_etl_runs_idempotency_key", etl_job_runs.c.idempotency_key, unique=True)

etl_watermarks = Table(
    "etl_watermarks",
    metadata,
    Column("job_id", String(100), ForeignKey("etl_jobs.job_id"), nullable=False),
    Column("source_table", String(255), nullable=False),
    Column("watermark_column", String(100), nullable=False),
    Column("watermark_type", String(50), nullable=False),
    Column("last_value_timestamp", UTCDateTime),
    Column("last_value_integer", BigInteger),
    Column("last_successful_run_id", BigInteger),
    Column("last_updated_at", UTCDateTime, server_default=func.current_timestamp()),
    PrimaryKeyConstraint("job_id", "source_table"),
)

# extra (scheduling): the work queue. One row per due cron slot of a job; the primary key makes a
# slot exist once however many schedulers see it. Workers claim rows with row locks (SKIP LOCKED)
# and a lease; a retry moves the row back to `retry_wait` until `not_before`.
etl_job_slots = Table(
    "etl_job_slots",
    metadata,
    Column("job_id", String(100), ForeignKey("etl_jobs.job_id"), nullable=False),
    Column("scheduled_for", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0", default=0),
    Column("missed", Integer, nullable=False, server_default="0", default=0),
    Column("not_before", UTCDateTime, nullable=False),
    Column("worker_id", String(255)),
    Column("lease_expires_at", UTCDateTime),
    Column("last_run_id", BigInteger),
    Column("created_at", UTCDateTime, server_default=func.current_timestamp()),
    Column("updated_at", UTCDateTime, server_default=func.current_timestamp()),
    PrimaryKeyConstraint("job_id", "scheduled_for"),
    Index("idx_etl_slots_ready", "status", "not_before"),
)

# extra (operations): every alert highmark decided to send, one row per sink, with its delivery
# attempts. The unique (sink, dedup_key) makes an alert exist once per failure streak.
etl_alerts = Table(
    "etl_alerts",
    metadata,
    Column(
        "alert_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("job_id", String(100), nullable=False),
    Column("event", String(50), nullable=False),
    Column("dedup_key", String(255), nullable=False),
    Column("sink", String(255), nullable=False),
    Column("run_id", BigInteger),
    Column("message", Text, nullable=False),
    Column("payload", JSONDetails),
    Column("status", String(20), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, server_default="0", default=0),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("next_attempt_at", UTCDateTime),
    UniqueConstraint("sink", "dedup_key", name="uq_etl_alerts_sink_key"),
    Index("idx_etl_alerts_created", "created_at"),
    Index("idx_etl_alerts_status", "status", "next_attempt_at"),
)

# extra (operations): per job and day, what the purged runs did (reference: "keep summary 1-2
# years"). Rows are added to as runs of the day are rolled up.
etl_run_summaries = Table(
    "etl_run_summaries",
    metadata,
    Column("job_id", String(100), nullable=False),
    Column("day", Date, nullable=False),
    Column("runs", Integer, nullable=False, server_default="0", default=0),
    Column("successes", Integer, nullable=False, server_default="0", default=0),
    Column("failures", Integer, nullable=False, server_default="0", default=0),
    Column("cancelled", Integer, nullable=False, server_default="0", default=0),
    Column("rows_read", BigInteger, nullable=False, server_default="0", default=0),
    Column("rows_written", BigInteger, nullable=False, server_default="0", default=0),
    Column("rows_updated", BigInteger, nullable=False, server_default="0", default=0),
    Column("rows_deleted", BigInteger, nullable=False, server_default="0", default=0),
    Column("duration_seconds_total", BigInteger, nullable=False, server_default="0", default=0),
    Column("duration_seconds_max", Integer, nullable=False, server_default="0", default=0),
    # extra (bad rows): the rows the day's purged runs quarantined
    Column("rows_rejected", BigInteger, nullable=False, server_default="0", default=0),
    PrimaryKeyConstraint("job_id", "day"),
)

# extra (operations): when periodic maintenance (purge, freshness checks) last ran, so that many
# workers do it once between them (compare-and-set on last_run_at).
etl_maintenance = Table(
    "etl_maintenance",
    metadata,
    Column("task", String(100), primary_key=True),
    Column("last_run_at", UTCDateTime),
    Column("last_worker_id", String(255)),
)

# extra (watermark history): every change of a mark — a run's commit, a hand-set value, a reset, a
# rollback — with the values before and after, written in the change's own transaction. Kept as
# long as the watermarks (never purged); no foreign key, so it outlives a job's rows.
etl_watermark_history = Table(
    "etl_watermark_history",
    metadata,
    Column(
        "history_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("job_id", String(100), nullable=False),
    Column("source_table", String(255), nullable=False),
    Column("watermark_column", String(100)),
    Column("watermark_type", String(50)),
    Column("old_value_timestamp", UTCDateTime),
    Column("old_value_integer", BigInteger),
    Column("new_value_timestamp", UTCDateTime),
    Column("new_value_integer", BigInteger),
    Column("change", String(20), nullable=False),  # run | set | reset | rollback
    Column("run_id", BigInteger),  # the run that committed it (rollback: the run rolled back to)
    Column("changed_by", String(255)),
    Column("changed_at", UTCDateTime, nullable=False),
    Index("idx_etl_wm_history_job", "job_id", "history_id"),
)

# extra (API): who did what through the REST API and the dashboard, when, and how it ended.
etl_audit = Table(
    "etl_audit",
    metadata,
    Column(
        "audit_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("actor", String(255), nullable=False),  # the token's name, or why there is none
    Column("scope", String(20)),
    Column("action", String(255), nullable=False),  # e.g. "POST /api/v1/jobs/{job_id}/runs"
    Column("target", String(255)),  # the job or run acted on
    Column("status_code", Integer),
    Column("outcome", Text),
    Column("client", String(255)),
    Column("details", JSONDetails),
    Index("idx_etl_audit_occurred", "occurred_at"),
)

# extra (schema changes): every change a run applied to a target table (a column added or
# widened) or found (a column the source no longer has), for `highmark schema history`. Like the
# watermark history, kept as long as the targets it describes (never purged).
etl_schema_changes = Table(
    "etl_schema_changes",
    metadata,
    Column(
        "change_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("job_id", String(100), nullable=False),
    Column("run_id", BigInteger),
    Column("source_table", String(255), nullable=False),
    Column("target_table", String(255), nullable=False),
    Column("column_name", String(255), nullable=False),
    Column("change_kind", String(20), nullable=False),  # add | drop | widen
    Column("old_type", String(255)),
    Column("new_type", String(255)),
    Column("applied_at", UTCDateTime, nullable=False),
    Index("idx_etl_schema_changes_job", "job_id", "change_id"),
)

# extra (bad rows): rows a run quarantined (`on_bad_rows: quarantine`) because the target refused
# their values or the source could not convert them; `highmark rejected retry` loads them again
# and removes those that went in. `record_key` (a hash of the source table and record id) finds a
# row's earlier entry, which a new rejection replaces. Purged with their run's detail.
etl_rejected_rows = Table(
    "etl_rejected_rows",
    metadata,
    Column(
        "rejected_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("job_id", String(100), nullable=False),
    Column("run_id", BigInteger),
    Column("source_table", String(255), nullable=False),
    Column("source_record_id", Text, nullable=False),  # JSON: the primary key's value(s)
    Column("record_key", String(64), nullable=False),
    Column("source_data", JSONDetails),
    Column("error_message", Text, nullable=False),
    Column("error_column", String(255)),
    Column("error_constraint", String(255)),
    Column("rejected_at", UTCDateTime, nullable=False),
    Column("retried_at", UTCDateTime),
    Column("retry_count", Integer, nullable=False, server_default="0", default=0),
    Index("idx_etl_rejected_job", "job_id", "rejected_id"),
    Index("idx_etl_rejected_key", "job_id", "record_key"),
    Index("idx_etl_rejected_run", "run_id"),
)
