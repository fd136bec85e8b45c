"""Scheduling: cron slots (etl_job_slots), next due times, attempts, cancel requests.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from highmark.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("etl_jobs") as batch:
        batch.add_column(sa.Column("schedule_timezone", sa.String(64)))
        batch.add_column(sa.Column("next_due_at", UTCDateTime()))
        batch.add_column(sa.Column("is_active_override", sa.Boolean()))
        batch.create_index("idx_etl_jobs_due", ["is_active", "next_due_at"])
    with op.batch_alter_table("etl_job_runs") as batch:
        batch.add_column(sa.Column("scheduled_for", UTCDateTime()))
        batch.add_column(sa.Column("attempt", sa.Integer()))
        batch.add_column(sa.Column("worker_id", sa.String(255)))
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_unique_constraint(
            "uq_etl_runs_slot_attempt", ["job_id", "scheduled_for", "attempt"]
        )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's batch mode rebuilt the table and lost the index's DESC: put it back.
        op.drop_index("idx_etl_runs_job", table_name="etl_job_runs")
        op.create_index("idx_etl_runs_job", "etl_job_runs", ["job_id", sa.text("started_at DESC")])
    op.create_table(
        "etl_job_slots",
        sa.Column("job_id", sa.String(100), sa.ForeignKey("etl_jobs.job_id"), nullable=False),
        sa.Column("scheduled_for", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("missed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("not_before", UTCDateTime(), nullable=False),
        sa.Column("worker_id", sa.String(255)),
        sa.Column("lease_expires_at", UTCDateTime()),
        sa.Column("last_run_id", sa.BigInteger()),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.current_timestamp()),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.current_timestamp()),
        sa.PrimaryKeyConstraint("job_id", "scheduled_for"),
    )
    op.create_index("idx_etl_slots_ready", "etl_job_slots", ["status", "not_before"])


def downgrade() -> None:
    op.drop_index("idx_etl_slots_ready", table_name="etl_job_slots")
    op.drop_table("etl_job_slots")
    with op.batch_alter_table("etl_job_runs") as batch:
        batch.drop_constraint("uq_etl_runs_slot_attempt", type_="unique")
        batch.drop_column("cancel_requested")
        batch.drop_column("worker_id")
        batch.drop_column("attempt")
        batch.drop_column("scheduled_for")
    with op.batch_alter_table("etl_jobs") as batch:
        batch.drop_index("idx_etl_jobs_due")
        batch.drop_column("is_active_override")
        batch.drop_column("next_due_at")
        batch.drop_column("schedule_timezone")
