"""What clients send to ingest, validated strictly, and how it becomes a `Post` event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from shared.events import Post, PostKind
from shared.fields import INT32_MAX, text_field
from shared.text import has_text, to_plain_line, to_plain_text

MAX_TAGS = 20
MAX_TAG_CHARS = 64
# Dates the index and the day-by-day counts can work with (a day before or after stays a date).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)

Id = text_field(strip=True, min_length=1, max_length=200)
Tag = text_field(strip=True, min_length=1, max_length=MAX_TAG_CHARS)
Group = text_field(strip=True, min_length=1, max_length=200)

QUESTION_EXAMPLE = {
    "id": "p-1001",
    "thread_id": "t-17",
    "author_id": "u-ana",
    "kind": "question",
    "title": "How do we rotate the Vault token used by CI?",
    "body": "<p>The token expires on Friday. Who has done this before?</p>",
    "tags": ["vault", "ci"],
    "audience": ["public"],
    "url": "https://intranet.example/t/17",
}
BATCH_EXAMPLE = {
    "posts": [
        {"id": "p-1", "thread_id": "t-1", "author_id": "u-bo", "kind": "question", "title": "Postgres replica lag",
         "body": "Our replica is minutes behind.", "backfill": True},
        {"id": "p-2", "thread_id": "t-1", "author_id": "u-cy", "kind": "answer",
         "body": "Check wal_receiver_status and the network between them.", "accepted": True, "backfill": True},
    ]
}


class PostIn(BaseModel):
    """One post as a client sends it; the tenant is never part of it (the API key names it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [QUESTION_EXAMPLE]})

    id: Id = Field(description="The post's id in the intranet, 1-200 characters (spaces around it trimmed); "
                   "sending the same id again replaces the post.", examples=["p-1001"])
    thread_id: Id = Field(description="The thread the post belongs to (a question's id usually names its thread); "
                          "a thread's posts stay in order.", examples=["t-17"])
    author_id: Id = Field(description="Who wrote it, as the intranet names people: the id that invitations, "
                          "preferences and `DELETE /v1/people/{person_id}` use.", examples=["u-ana"])
    kind: PostKind = Field(description="A new `question` that is not a backfill starts a match; an `answer` or a "
                           "`comment` adds to what its author is known for.", examples=["question"])
    body: text_field(min_length=1) = Field(
        description="The text, plain or HTML (stripped to text, which must not be empty); at most "
        "`INGEST_MAX_BODY_BYTES` bytes as UTF-8 (64 KiB by default), else 413.",
        examples=["<p>The token expires on Friday. Who has done this before?</p>"],
    )
    title: text_field(strip=True, max_length=500) | None = Field(
        default=None,
        description="The thread's title, on questions (up to 500 characters); HTML is stripped to one line of "
        "text. Replies are embedded with their thread's title.",
        examples=["How do we rotate the Vault token used by CI?"],
    )
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = Field(
        default=[], description="Up to 20 tags of 1-64 characters each; repeats count once.", examples=[["vault", "ci"]]
    )
    audience: Annotated[list[Group], Field(min_length=1, max_length=100)] = Field(
        default=["public"],
        description="Who may read the post: `public`, or 1-100 ids of the groups that may. It is only ever shown "
        "as evidence to readers of the same audience.",
        examples=[["public"], ["team-payments"]],
    )
    created_at: datetime | None = Field(
        default=None,
        description="When it was written, ISO 8601, from 1970 on and before 9999; without an offset it means UTC. "
        "Default: when ingest received it.",
        examples=["2025-05-02T09:30:00Z"],
    )
    url: HttpUrl | None = Field(default=None, description="A link back to the post, shown in invitations.",
                                examples=["https://intranet.example/t/17"])
    accepted: bool = Field(default=False, description="An answer the asker accepted; it weighs more in the ranking.",
                           examples=[True])
    score: int = Field(default=0, ge=-INT32_MAX, le=INT32_MAX, examples=[12],
                       description="Votes or likes, an integer within ±2,147,483,647.")
    backfill: bool = Field(
        default=False,
        description="`true` for history being loaded (an import): indexed on a lane of its own, behind live posts; "
        "a backfilled question never invites anyone.",
        examples=[False],
    )
    # Declared only to answer with a clear message instead of a generic "extra field".
    tenant: Any = Field(default=None, description="Never send it: the API key names the tenant, and a post that "
                        "names one is refused with 422.")

    @field_validator("tenant")
    @classmethod
    def _no_tenant(cls, value: Any) -> None:
        raise ValueError("the tenant comes from the API key; leave it out of the post")

    @field_validator("body")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not has_text(value):
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
    """Many posts at once, checked together: one bad post sends none of them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [BATCH_EXAMPLE]})

    posts: Annotated[list[PostIn], Field(min_length=1)] = Field(
        description="1 to `INGEST_MAX_BATCH` posts (1,000 by default; more is a 413), the whole request at most "
        "`INGEST_MAX_REQUEST_BYTES`; an error's `loc` names the post by its index."
    )


class Accepted(BaseModel):
    """The post, or its deletion, is on the posts topic."""

    id: str = Field(description="The id of the post stored or deleted.", examples=["p-1001"])
    status: str = Field(
        default="accepted",
        description="Always `accepted`: the event is on the posts topic; indexing follows within moments.",
        examples=["accepted"],
    )


class BatchAccepted(BaseModel):
    """Every post of the batch is on the posts topic."""

    accepted: int = Field(description="How many posts were sent: all of the batch.", examples=[2])
    ids: list[str] = Field(description="Their ids, in the order the batch gave them.", examples=[["p-1", "p-2"]])


class PersonErasureAccepted(BaseModel):
    """The erasure is on the posts topic; every service forgets the person within seconds."""

    person_id: str = Field(description="The person erased, trimmed of spaces like a post's `author_id`.",
                           examples=["u-bo"])
    status: str = Field(default="accepted", examples=["accepted"],
                        description="Always `accepted`: the `person.erased` event is on the posts topic.")
