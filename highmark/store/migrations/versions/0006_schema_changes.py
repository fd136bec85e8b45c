"""Schema changes: what runs applied to their target tables (etl_schema_changes).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from highmark.store.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "etl_schema_changes",
        sa.Column(
            "change_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("job_id", sa.String(100), nullable=False),
        sa.Column("run_id", sa.BigInteger()),
        sa.Column("source_table", sa.String(255), nullable=False),
        sa.Column("target_table", sa.String(255), nullable=False),
        sa.Column("column_name", sa.String(255), nullable=False),
        sa.Column("change_kind", sa.String(20), nullable=False),
        sa.Column("old_type", sa.String(255)),
        sa.Column("new_type", sa.String(255)),
        sa.Column("applied_at", UTCDateTime(), nullable=False),
    )
    op.create_index("idx_etl_schema_changes_job", "etl_schema_changes", ["job_id", "change_id"])


def downgrade() -> None:
    op.drop_index("idx_etl_schema_changes_job", table_name="etl_schema_changes")
    op.drop_table("etl_schema_changes")
