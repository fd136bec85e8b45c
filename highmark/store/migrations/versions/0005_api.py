"""API and history: watermark history, the audit log, backfills, idempotent triggering.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from highmark.store.tables import JSONDocument, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _key() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMNs (no table rebuild on SQLite); uniqueness comes from unique indexes.
    op.add_column("etl_jobs", sa.Column("backfill_checkpoint", JSONDocument))
    op.add_column("etl_job_runs", sa.Column("backfill_window", sa.JSON()))
    op.add_column("etl_job_runs", sa.Column("live_backfill_job_id", sa.String(100)))
    op.add_column("etl_job_runs", sa.Column("idempotency_key", sa.String(255)))
    op.create_index(
        "uq_etl_runs_live_backfill_job_id", "etl_job_runs", ["live_backfill_job_id"], unique=True
    )
    op.create_index("uq_etl_runs_idempotency_key", "etl_job_runs", ["idempotency_key"], unique=True)
    op.create_table(
        "etl_watermark_history",
        sa.Column("history_id", _key(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(100), nullable=False),
        sa.Column("source_table", sa.String(255), nullable=False),
        sa.Column("watermark_column", sa.String(100)),
        sa.Column("watermark_type", sa.String(50)),
        sa.Column("old_value_timestamp", UTCDateTime()),
        sa.Column("old_value_integer", sa.BigInteger()),
        sa.Column("new_value_timestamp", UTCDateTime()),
        sa.Column("new_value_integer", sa.BigInteger()),
        sa.Column("change", sa.String(20), nullable=False),
        sa.Column("run_id", sa.BigInteger()),
        sa.Column("changed_by", sa.String(255)),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
    )
    op.create_index("idx_etl_wm_history_job", "etl_watermark_history", ["job_id", "history_id"])
    op.create_table(
        "etl_audit",
        sa.Column("audit_id", _key(), primary_key=True, autoincrement=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(20)),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255)),
        sa.Column("status_code", sa.Integer()),
        sa.Column("outcome", sa.Text()),
        sa.Column("client", sa.String(255)),
        sa.Column("details", sa.JSON()),
    )
    op.create_index("idx_etl_audit_occurred", "etl_audit", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("idx_etl_audit_occurred", table_name="etl_audit")
    op.drop_table("etl_audit")
    op.drop_index("idx_etl_wm_history_job", table_name="etl_watermark_history")
    op.drop_table("etl_watermark_history")
    op.drop_index("uq_etl_runs_idempotency_key", table_name="etl_job_runs")
    op.drop_index("uq_etl_runs_live_backfill_job_id", table_name="etl_job_runs")
    with op.batch_alter_table("etl_job_runs") as batch:
        batch.drop_column("idempotency_key")
        batch.drop_column("live_backfill_job_id")
        batch.drop_column("backfill_window")
    with op.batch_alter_table("etl_jobs") as batch:
        batch.drop_column("backfill_checkpoint")
