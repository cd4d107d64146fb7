"""An invitation keeps its "why you" as sent and the track record that sentence states.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invitations") as batch:
        batch.add_column(sa.Column("why", sa.Text()))
        batch.add_column(sa.Column("track_record", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("invitations") as batch:
        batch.drop_column("track_record")
        batch.drop_column("why")
