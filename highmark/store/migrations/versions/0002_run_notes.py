"""etl_job_runs.notes: what a run wants a user to know (future rows, skipped NULLs).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("etl_job_runs") as batch:
        batch.add_column(sa.Column("notes", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("etl_job_runs") as batch:
        batch.drop_column("notes")
