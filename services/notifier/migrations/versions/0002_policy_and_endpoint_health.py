"""Invite policy, thread escalation, responses, secret rotation and endpoint health.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("previous_secret", sa.String(200)))
        batch.add_column(sa.Column("previous_secret_until", Moment))
        batch.add_column(sa.Column("failing_since", Moment))
    with op.batch_alter_table("invitations") as batch:
        batch.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="1"))
    op.create_index("ix_invitations_person", "invitations", ["tenant", "person_id", "created_at"])
    op.create_table(
        "person_preferences",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("person_id", sa.String(200), primary_key=True),
        sa.Column("opted_out", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("snoozed_until", Moment),
        sa.Column("max_per_day", sa.Integer()),
        sa.Column("max_per_week", sa.Integer()),
        sa.Column("updated_at", Moment, nullable=False),
    )
    op.create_table(
        "invitation_skips",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("thread_id", sa.String(200), nullable=False),
        sa.Column("person_id", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("decided_at", Moment, nullable=False),
        sa.UniqueConstraint("tenant", "thread_id", "person_id", "reason", name="uq_skip_identity"),
    )
    op.create_table(
        "thread_states",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("thread_id", sa.String(200), primary_key=True),
        sa.Column("question", sa.JSON(), nullable=False),
        sa.Column("participants", sa.JSON(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("match_event_id", sa.String(64), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("escalate_at", Moment),
        sa.Column("closed_reason", sa.String(40)),
        sa.Column("updated_at", Moment, nullable=False),
    )
    op.create_index("ix_thread_states_escalate_at", "thread_states", ["escalate_at"])
    op.create_table(
        "thread_replies",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("thread_id", sa.String(200), primary_key=True),
        sa.Column("post_id", sa.String(200), primary_key=True),
        sa.Column("person_id", sa.String(200), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", Moment, nullable=False),
    )
    op.create_table(
        "invitation_responses",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("invitation_id", sa.String(40), sa.ForeignKey("invitations.id"), nullable=False),
        sa.Column("thread_id", sa.String(200), nullable=False),
        sa.Column("person_id", sa.String(200), nullable=False),
        sa.Column("response", sa.String(20), nullable=False),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("published_at", Moment),
    )
    op.create_index("ix_invitation_responses_invitation_id", "invitation_responses", ["invitation_id"])
    op.create_index("ix_invitation_responses_unpublished", "invitation_responses", ["published_at"])


def downgrade() -> None:
    op.drop_table("invitation_responses")
    op.drop_table("thread_replies")
    op.drop_table("thread_states")
    op.drop_table("invitation_skips")
    op.drop_table("person_preferences")
    op.drop_index("ix_invitations_person", "invitations")
    with op.batch_alter_table("invitations") as batch:
        batch.drop_column("round")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("failing_since")
        batch.drop_column("previous_secret_until")
        batch.drop_column("previous_secret")
