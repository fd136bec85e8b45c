"""Control tables: etl_jobs, etl_job_runs, etl_watermarks.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from highmark.store.tables import JSONDocument, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "etl_jobs",
        sa.Column("job_id", sa.String(100), primary_key=True),
        sa.Column("job_name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("source_table", sa.String(255)),
        sa.Column("target_table", sa.String(255)),
        sa.Column("load_type", sa.String(50), nullable=False),
        sa.Column("schedule", sa.String(100)),
        sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("timeout_seconds", sa.Integer(), server_default="3600"),
        sa.Column("retry_count", sa.Integer(), server_default="3"),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.current_timestamp()),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.current_timestamp()),
        sa.Column("checkpoint_data", JSONDocument),
        sa.Column("definition", sa.JSON()),
    )
    op.create_index("idx_etl_jobs_active", "etl_jobs", ["is_active"])

    op.create_table(
        "etl_job_runs",
        sa.Column(
            "run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("job_id", sa.String(100), sa.ForeignKey("etl_jobs.job_id"), nullable=False),
        sa.Column("run_status", sa.String(50), nullable=False),
        sa.Column(
            "started_at", UTCDateTime(), nullable=False, server_default=sa.func.current_timestamp()
        ),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("duration_seconds", sa.Integer()),
        sa.Column("rows_read", sa.BigInteger(), server_default="0"),
        sa.Column("rows_written", sa.BigInteger(), server_default="0"),
        sa.Column("rows_updated", sa.BigInteger(), server_default="0"),
        sa.Column("rows_deleted", sa.BigInteger(), server_default="0"),
        sa.Column("watermark_start", UTCDateTime()),
        sa.Column("watermark_end", UTCDateTime()),
        sa.Column("error_message", sa.Text()),
        sa.Column("error_details", sa.JSON()),
        sa.Column("triggered_by", sa.String(100)),
        sa.Column("watermark_start_integer", sa.BigInteger()),
        sa.Column("watermark_end_integer", sa.BigInteger()),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer()),
        sa.Column("heartbeat_at", UTCDateTime()),
        sa.Column("owner_token", sa.String(64)),
        sa.Column("live_job_id", sa.String(100), unique=True),
        sa.Column("upper_bound", sa.String(64)),
        sa.Column("upper_bound_reason", sa.Text()),
    )
    op.create_index("idx_etl_runs_job", "etl_job_runs", ["job_id", sa.text("started_at DESC")])
    op.create_index("idx_etl_runs_status", "etl_job_runs", ["run_status", "started_at"])

    op.create_table(
        "etl_watermarks",
        sa.Column("job_id", sa.String(100), sa.ForeignKey("etl_jobs.job_id"), nullable=False),
        sa.Column("source_table", sa.String(255), nullable=False),
        sa.Column("watermark_column", sa.String(100), nullable=False),
        sa.Column("watermark_type", sa.String(50), nullable=False),
        sa.Column("last_value_timestamp", UTCDateTime()),
        sa.Column("last_value_integer", sa.BigInteger()),
        sa.Column("last_successful_run_id", sa.BigInteger()),
        sa.Column("last_updated_at", UTCDateTime(), server_default=sa.func.current_timestamp()),
        sa.PrimaryKeyConstraint("job_id", "source_table"),
    )


def downgrade() -> None:
    op.drop_table("etl_watermarks")
    op.drop_index("idx_etl_runs_status", table_name="etl_job_runs")
    op.drop_index("idx_etl_runs_job", table_name="etl_job_runs")
    op.drop_table("etl_job_runs")
    op.drop_index("idx_etl_jobs_active", table_name="etl_jobs")
    op.drop_table("etl_jobs")
