"""What clients send to ingest, validated strictly, and how it becomes a `Post` event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from shared.events import Post, PostKind
from shared.fields import INT32_MAX, text_field
from shared.text import to_plain_line, to_plain_text

MAX_TAGS = 20
MAX_TAG_CHARS = 64
# Dates the index and the day-by-day counts can work with (a day before or after stays a date).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)

Id = text_field(strip=True, min_length=1, max_length=200)
Tag = text_field(strip=True, min_length=1, max_length=MAX_TAG_CHARS)
Group = text_field(strip=True, min_length=1, max_length=200)


class PostIn(BaseModel):
    """One post as a client sends it; the tenant is never part of it (the API key names it)."""

    model_config = ConfigDict(extra="forbid")

    id: Id
    thread_id: Id
    author_id: Id
    kind: PostKind
    body: text_field(min_length=1)
    title: text_field(strip=True, max_length=500) | None = None
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []
    audience: Annotated[list[Group], Field(min_length=1, max_length=100)] = ["public"]
    created_at: datetime | None = None
    url: HttpUrl | None = None
    accepted: bool = False
    score: int = Field(default=0, ge=-INT32_MAX, le=INT32_MAX)
    backfill: bool = False
    # Declared only to answer with a clear message instead of a generic "extra field".
    tenant: Any = None

    @field_validator("tenant")
    @classmethod
    def _no_tenant(cls, value: Any) -> None:
        raise ValueError("the tenant comes from the API key; leave it out of the post")

    @field_validator("body")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not to_plain_text(value):
            raise ValueError("body has no text (empty once HTML is stripped)")
        return value

    @field_validator("created_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        # Clients that send no offset mean UTC; everything downstream compares aware times.
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if not EARLIEST <= value < LATEST:
            raise ValueError("must be from 1970 on and before the year 9999")
        return value.astimezone(UTC)

    def to_post(self, *, tenant: str, received_at: datetime) -> Post:
        """The event payload: plain-text title and body, tenant from the key, created_at defaulted."""
        return Post(
            id=self.id,
            tenant=tenant,
            thread_id=self.thread_id,
            author_id=self.author_id,
            kind=self.kind,
            title=to_plain_line(self.title or "") or None,
            body=to_plain_text(self.body),
            tags=tuple(dict.fromkeys(self.tags)),
            audience=tuple(dict.fromkeys(self.audience)),
            created_at=self.created_at or received_at,
            url=str(self.url) if self.url else None,
            accepted=self.accepted,
            score=self.score,
            backfill=self.backfill,
        )


class PostBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    posts: Annotated[list[PostIn], Field(min_length=1)]


class Accepted(BaseModel):
    id: str
    status: str = "accepted"


class BatchAccepted(BaseModel):
    accepted: int
    ids: list[str]


class PersonErasureAccepted(BaseModel):
    person_id: str
    status: str = "accepted"
