"""The notifier's tables: subscriptions, invitations, deliveries, preferences, threads, responses, erasures."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(sa.TypeDecorator):
    """Aware UTC datetimes in and out; SQLite keeps no zone, so it stores naive UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class DeliveryState(StrEnum):
    """Where a webhook delivery stands: retried while pending, then delivered or failed for good."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(200), index=True)
    url: Mapped[str] = mapped_column(sa.String(2048))
    secret: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(500))
    # Deleted by its tenant: hidden from the API, kept for its deliveries' history.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The secret before the last rotation: it signs too until `previous_secret_until`.
    previous_secret: Mapped[str | None] = mapped_column(sa.String(200))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # First failed attempt since the last success: a long enough run of failures disables it.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Invitation(Base):
    __tablename__ = "invitations"
    __table_args__ = (
        sa.UniqueConstraint("tenant", "thread_id", "person_id", name="uq_invitation_identity"),
        sa.Index("ix_invitations_person", "tenant", "person_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(200))
    thread_id: Mapped[str] = mapped_column(sa.String(200))
    person_id: Mapped[str] = mapped_column(sa.String(200))
    question_post_id: Mapped[str] = mapped_column(sa.String(200))
    question_title: Mapped[str | None] = mapped_column(sa.Text())
    question_url: Mapped[str | None] = mapped_column(sa.String(2048))
    score: Mapped[float] = mapped_column(sa.Float())
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    parts: Mapped[dict[str, float]] = mapped_column(sa.JSON())
    match_event_id: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # 1 for the first invitations of a thread, 2 and up for escalations.
    round: Mapped[int] = mapped_column(sa.Integer(), default=1)
    # The "why you" as sent and the track record it states; None on invitations from before 0004.
    why: Mapped[str | None] = mapped_column(sa.Text())
    track_record: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON())


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "invitation_id", "type", name="uq_delivery_identity"),
        sa.Index("ix_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(200))
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("subscriptions.id"))
    invitation_id: Mapped[str] = mapped_column(sa.ForeignKey("invitations.id"), index=True)
    message_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    type: Mapped[str] = mapped_column(sa.String(100))
    payload: Mapped[str] = mapped_column(sa.Text())
    state: Mapped[str] = mapped_column(sa.String(20))
    attempts: Mapped[int] = mapped_column(sa.Integer(), default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(sa.Integer())
    last_error: Mapped[str | None] = mapped_column(sa.Text())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The W3C trace context of the match that made it (shared/tracing.py); None outside a trace.
    traceparent: Mapped[str | None] = mapped_column(sa.String(64))


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(sa.ForeignKey("deliveries.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(sa.Integer())
    duration_ms: Mapped[int] = mapped_column(sa.Integer())
    error: Mapped[str | None] = mapped_column(sa.Text())


class PersonPreferences(Base):
    """A person's say in being invited; None caps mean the tenant's policy."""

    __tablename__ = "person_preferences"

    tenant: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    person_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    opted_out: Mapped[bool] = mapped_column(sa.Boolean(), default=False)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    max_per_day: Mapped[int | None] = mapped_column(sa.Integer())
    max_per_week: Mapped[int | None] = mapped_column(sa.Integer())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InvitationSkip(Base):
    """A candidate the policy passed over for a thread, and why; one row per person and reason."""

    __tablename__ = "invitation_skips"
    __table_args__ = (sa.UniqueConstraint("tenant", "thread_id", "person_id", "reason", name="uq_skip_identity"),)

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(sa.String(200))
    thread_id: Mapped[str] = mapped_column(sa.String(200))
    person_id: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str] = mapped_column(sa.String(40))
    score: Mapped[float] = mapped_column(sa.Float())
    round: Mapped[int] = mapped_column(sa.Integer())
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ThreadState(Base):
    """A thread's latest match, kept so escalation can invite its next candidates."""

    __tablename__ = "thread_states"
    __table_args__ = (sa.Index("ix_thread_states_escalate_at", "escalate_at"),)

    tenant: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    thread_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    question: Mapped[dict[str, Any]] = mapped_column(sa.JSON())
    participants: Mapped[list[str]] = mapped_column(sa.JSON())
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    match_event_id: Mapped[str] = mapped_column(sa.String(64))
    # When that match was ranked (its event's time): nobody erased since is invited from it.
    # None for threads stored before it was kept: then any erasure on record counts.
    matched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rounds: Mapped[int] = mapped_column(sa.Integer(), default=1)
    # When to look again for a reply; None once escalation is over (`closed_reason` says why).
    escalate_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_reason: Mapped[str | None] = mapped_column(sa.String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def close(self, reason: str, now: datetime) -> None:
        """Escalation is over, for `reason` (a policy.Closed value)."""
        self.closed_reason, self.escalate_at, self.updated_at = str(reason), None, now

    def reopen(self, escalate_at: datetime, now: datetime) -> None:
        self.closed_reason, self.escalate_at, self.updated_at = None, escalate_at, now


class ThreadReply(Base):
    """A post in a thread, as far as escalation cares: who wrote it and whether it was accepted."""

    __tablename__ = "thread_replies"

    tenant: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    thread_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    post_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    person_id: Mapped[str] = mapped_column(sa.String(200))
    accepted: Mapped[bool] = mapped_column(sa.Boolean(), default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InvitationResponseRecord(Base):
    """What an invitee said; `published_at` stays None until the event is on the responses topic."""

    __tablename__ = "invitation_responses"
    __table_args__ = (sa.Index("ix_invitation_responses_unpublished", "published_at"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)  # the event's id
    tenant: Mapped[str] = mapped_column(sa.String(200))
    invitation_id: Mapped[str] = mapped_column(sa.ForeignKey("invitations.id"), index=True)
    thread_id: Mapped[str] = mapped_column(sa.String(200))
    person_id: Mapped[str] = mapped_column(sa.String(200))
    response: Mapped[str] = mapped_column(sa.String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PersonErasure(Base):
    """That a person was erased, and when, so a match ranked before it never invites them.

    The person is kept only as a hash of tenant and id, and only as long as such a match can
    still be on the matches topic.
    """

    __tablename__ = "person_erasures"
    __table_args__ = (sa.Index("ix_person_erasures_erased_at", "erased_at"),)

    tenant: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    person_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime())
