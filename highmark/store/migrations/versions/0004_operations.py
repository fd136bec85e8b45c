"""Operations: alert deliveries (etl_alerts), run summaries, maintenance bookkeeping.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from highmark.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "etl_alerts",
        sa.Column(
            "alert_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("job_id", sa.String(100), nullable=False),
        sa.Column("event", sa.String(50), nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("sink", sa.String(255), nullable=False),
        sa.Column("run_id", sa.BigInteger()),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON()),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime()),
        sa.Column("next_attempt_at", UTCDateTime()),
        sa.UniqueConstraint("sink", "dedup_key", name="uq_etl_alerts_sink_key"),
    )
    op.create_index("idx_etl_alerts_created", "etl_alerts", ["created_at"])
    op.create_index("idx_etl_alerts_status", "etl_alerts", ["status", "next_attempt_at"])
    op.create_table(
        "etl_run_summaries",
        sa.Column("job_id", sa.String(100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *(
            sa.Column(name, sa.Integer(), nullable=False, server_default="0")
            for name in ("runs", "successes", "failures", "cancelled")
        ),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
            for name in (
                "rows_read",
                "rows_written",
                "rows_updated",
                "rows_deleted",
                "duration_seconds_total",
            )
        ),
        sa.Column("duration_seconds_max", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("job_id", "day"),
    )
    op.create_table(
        "etl_maintenance",
        sa.Column("task", sa.String(100), primary_key=True),
        sa.Column("last_run_at", UTCDateTime()),
        sa.Column("last_worker_id", sa.String(255)),
    )


def downgrade() -> None:
    op.drop_table("etl_maintenance")
    op.drop_table("etl_run_summaries")
    op.drop_index("idx_etl_alerts_status", table_name="etl_alerts")
    op.drop_index("idx_etl_alerts_created", table_name="etl_alerts")
    op.drop_table("etl_alerts")
