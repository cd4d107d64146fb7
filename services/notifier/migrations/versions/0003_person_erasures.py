"""Erasure records, so a match ranked before an erasure never invites the person; a thread's match time.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "person_erasures",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("person_hash", sa.String(64), primary_key=True),
        sa.Column("erased_at", Moment, nullable=False),
    )
    op.create_index("ix_person_erasures_erased_at", "person_erasures", ["erased_at"])
    with op.batch_alter_table("thread_states") as batch:
        batch.add_column(sa.Column("matched_at", Moment))


def downgrade() -> None:
    with op.batch_alter_table("thread_states") as batch:
        batch.drop_column("matched_at")
    op.drop_table("person_erasures")
