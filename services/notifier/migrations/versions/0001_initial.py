"""Subscriptions, invitations, deliveries and delivery attempts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("description", sa.String(500)),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("disabled_at", Moment),
        sa.Column("disabled_reason", sa.String(500)),
        sa.Column("deleted_at", Moment),
    )
    op.create_index("ix_subscriptions_tenant", "subscriptions", ["tenant"])
    op.create_table(
        "invitations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("thread_id", sa.String(200), nullable=False),
        sa.Column("person_id", sa.String(200), nullable=False),
        sa.Column("question_post_id", sa.String(200), nullable=False),
        sa.Column("question_title", sa.Text()),
        sa.Column("question_url", sa.String(2048)),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("match_event_id", sa.String(64), nullable=False),
        sa.Column("created_at", Moment, nullable=False),
        sa.UniqueConstraint("tenant", "thread_id", "person_id", name="uq_invitation_identity"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("subscription_id", sa.String(40), sa.ForeignKey("subscriptions.id"), nullable=False),
        sa.Column("invitation_id", sa.String(40), sa.ForeignKey("invitations.id"), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False, unique=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", Moment),
        sa.Column("last_status", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("delivered_at", Moment),
        sa.UniqueConstraint("subscription_id", "invitation_id", "type", name="uq_delivery_identity"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_deliveries_invitation_id", "deliveries", ["invitation_id"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(40), sa.ForeignKey("deliveries.id"), nullable=False),
        sa.Column("attempted_at", Moment, nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_table("deliveries")
    op.drop_table("invitations")
    op.drop_table("subscriptions")
