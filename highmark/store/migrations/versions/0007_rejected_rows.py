"""Bad rows: the etl_rejected_rows quarantine, and rows_rejected on etl_job_runs and
etl_run_summaries.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from highmark.store.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("etl_job_runs", sa.Column("rows_rejected", sa.BigInteger(), server_default="0"))
    op.add_column(
        "etl_run_summaries",
        sa.Column("rows_rejected", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "etl_rejected_rows",
        sa.Column(
            "rejected_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("job_id", sa.String(100), nullable=False),
        sa.Column("run_id", sa.BigInteger()),
        sa.Column("source_table", sa.String(255), nullable=False),
        sa.Column("source_record_id", sa.Text(), nullable=False),
        sa.Column("record_key", sa.String(64), nullable=False),
        sa.Column("source_data", sa.JSON()),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("error_column", sa.String(255)),
        sa.Column("error_constraint", sa.String(255)),
        sa.Column("rejected_at", UTCDateTime(), nullable=False),
        sa.Column("retried_at", UTCDateTime()),
        sa.Column("retry_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("idx_etl_rejected_job", "etl_rejected_rows", ["job_id", "rejected_id"])
    op.create_index("idx_etl_rejected_key", "etl_rejected_rows", ["job_id", "record_key"])
    op.create_index("idx_etl_rejected_run", "etl_rejected_rows", ["run_id"])


def downgrade() -> None:
    op.drop_index("idx_etl_rejected_run", table_name="etl_rejected_rows")
    op.drop_index("idx_etl_rejected_key", table_name="etl_rejected_rows")
    op.drop_index("idx_etl_rejected_job", table_name="etl_rejected_rows")
    op.drop_table("etl_rejected_rows")
    with op.batch_alter_table("etl_run_summaries") as batch:
        batch.drop_column("rows_rejected")
    with op.batch_alter_table("etl_job_runs") as batch:
        batch.drop_column("rows_rejected")
