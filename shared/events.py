"""The event contract between ingest, matcher and notifier: one frozen model per event.

Envelopes carry CloudEvents attributes (id, type, source, time, tenant) around `data`.
Consumers ignore fields they do not know; producers only ever add fields.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PostKind(StrEnum):
    """What a post is in its thread."""

    QUESTION = "question"
    ANSWER = "answer"
    COMMENT = "comment"


class Post(_Frozen):
    """A post as the matcher indexes it: the title and the body are already plain text."""

    id: str
    tenant: str
    thread_id: str
    author_id: str
    kind: PostKind
    title: str | None = None
    body: str
    tags: tuple[str, ...] = ()
    audience: tuple[str, ...] = ("public",)
    created_at: datetime
    url: str | None = None
    accepted: bool = False
    score: int = 0
    backfill: bool = False


class PostRef(_Frozen):
    post_id: str
    # Known when the caller says it: then the delete is keyed, and ordered, with its thread.
    thread_id: str | None = None


class PersonRef(_Frozen):
    person_id: str


class Evidence(_Frozen):
    """One of a candidate's past posts that matches the question: the "why you"."""

    post_id: str = Field(description="The post's id, as ingest was given it.", examples=["p-2"])
    thread_id: str = Field(description="The thread it is in.", examples=["t-1"])
    kind: PostKind = Field(description="Whether the post is a question, an answer or a comment.",
                           examples=["answer"])
    title: str | None = Field(default=None, description="The post's title as plain text; `null` on most replies.",
                              examples=["Postgres replica lag"])
    snippet: str = Field(description="The start of the post's plain text, cut at a word after at most 280 "
                         "characters (then ending in …).",
                         examples=["Check wal_receiver_status and the network between them."])
    url: str | None = Field(default=None, description="The link back to the post that ingest was given (`url`), "
                            "`null` when it was given none.", examples=["https://intranet.example/t/9#p-88"])
    similarity: float = Field(
        description="Cosine similarity of the post to the question, -1 to 1 (higher: closer in meaning); 0 for a "
        "post found by its words alone; an answer found in the thread of a similar question has that question's.",
        examples=[0.71],
    )
    accepted: bool = Field(default=False, description="Whether the asker accepted this answer.", examples=[True])
    score: int = Field(default=0, description="The post's votes or likes, as ingest was given them.", examples=[4])
    created_at: datetime | None = Field(default=None, description="When the post was written (UTC).",
                                        examples=["2025-03-11T14:02:00Z"])


class TagRecord(_Frozen):
    """A person's answers in one of the question's tags."""

    tag: str = Field(description="One of the question's tags.", examples=["postgres"])
    answers: int = Field(description="How many answers the person wrote in threads with this tag.", examples=[3])
    accepted: int = Field(default=0, description="How many of those answers were accepted.", examples=[2])


class TrackRecord(_Frozen):
    """What the tenant's posts show of a person, counted up to the start of the question's day (UTC),
    and what they said when invited to questions like this one before it.

    These are the facts a "why you" may state: counts of the person's own answers and responses,
    never a reading of their score.
    """

    answers: int = Field(default=0, description="How many answers the person wrote in the tenant.", examples=[9])
    accepted: int = Field(default=0, description="How many of their answers were accepted.", examples=[3])
    answers_last_30_days: int = Field(default=0, description="Their answers in the 30 days before the count.",
                                      examples=[4])
    answers_last_90_days: int = Field(default=0, description="Their answers in the 90 days before the count.",
                                      examples=[7])
    tags: tuple[TagRecord, ...] = Field(
        default=(), description="The question's tags they have answers in, most answered first."
    )
    answered_nearby: int = Field(
        default=0, examples=[1],
        description="Their invitations to earlier questions at cosine 0.75 or closer to this one that they answered.",
    )
    not_my_area_nearby: int = Field(
        default=0, examples=[0],
        description="Their invitations to earlier questions at cosine 0.75 or closer to this one that they called "
        "not their area.",
    )


class ScorePart(StrEnum):
    """What a candidate's score is made of (`Candidate.parts`): the matcher writes them, the notifier explains them."""

    SIMILARITY = "similarity"  # their posts' meaning is close to the question's
    LEXICAL = "lexical"  # their posts share the question's words
    ACTIVITY = "activity"  # they have been answering lately
    ANSWERS = "answers"  # how much they have answered
    ACCEPTED = "accepted"  # how often their answers were accepted
    TAGS = "tags"  # they answer in the question's tags
    FEEDBACK = "feedback"  # how they responded to invitations to questions like it


class Candidate(_Frozen):
    """A person who may know the answer, with why: their matching posts, the score's parts, their counts."""

    person_id: str = Field(description="The person, as the posts' `author_id` names them.", examples=["u-cy"])
    score: float = Field(
        description="How well they fit, as their lead over the weakest candidate found (who scores 0): never "
        "negative, comparable within one answer only.",
        examples=[2.31],
    )
    evidence: tuple[Evidence, ...] = Field(
        default=(), description="Their posts that best match, best first (`MATCHER_EVIDENCE`, 3 by default)."
    )
    # Keyed by plain strings: a reader meets parts a newer matcher adds without failing.
    parts: dict[str, float] = Field(
        default_factory=dict,
        description="What the score is made of, by part (`similarity`, `lexical`, `activity`, `answers`, "
        "`accepted`, `tags`, and `feedback` when responses to invitations near the question count); they sum to "
        "the score, and a part is negative where the person trails the weakest candidate on it.",
        examples=[{"similarity": 1.42, "lexical": 0.31, "activity": 0.22, "answers": 0.18, "accepted": 0.12,
                   "tags": 0.06}],
    )
    closeness: float | None = Field(
        default=None,
        description="Cosine similarity to the question of their closest answer, or of the question of a thread "
        "they answered, among the posts the readers may see (0: none). `null` from a matcher older than the field.",
        examples=[0.71],
    )
    track_record: TrackRecord | None = Field(
        default=None, description="Their own counts, the facts a \"why you\" may state; `null` from a matcher "
        "older than the field."
    )


class Question(_Frozen):
    post_id: str
    thread_id: str
    author_id: str
    title: str | None = None
    excerpt: str
    url: str | None = None
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None


class Match(_Frozen):
    question: Question
    candidates: tuple[Candidate, ...]
    # People already in the thread when it was ranked; never invited.
    participants: tuple[str, ...] = ()


def _now() -> datetime:
    return datetime.now(UTC)


class ResponseKind(StrEnum):
    """What an invitee did with an invitation."""

    ACCEPTED = "accepted"
    DECLINED = "declined"
    NOT_MY_AREA = "not_my_area"
    ANSWERED = "answered"


class InvitationResponse(_Frozen):
    """What an invited person said about an invitation, with the question it was about."""

    invitation_id: str
    thread_id: str
    person_id: str
    response: ResponseKind
    question_post_id: str
    question_title: str | None = None
    # The invitation's score when it was sent: lets the matcher weigh the feedback.
    score: float | None = None
    responded_at: datetime


class _Envelope(_Frozen):
    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    source: str = "expertmatch"
    time: datetime = Field(default_factory=_now)
    tenant: str


class PostUpserted(_Envelope):
    type: Literal["post.upserted"] = "post.upserted"
    data: Post


class PostDeleted(_Envelope):
    type: Literal["post.deleted"] = "post.deleted"
    data: PostRef


class PersonErased(_Envelope):
    type: Literal["person.erased"] = "person.erased"
    data: PersonRef


class ExpertsMatched(_Envelope):
    type: Literal["experts.matched"] = "experts.matched"
    data: Match


class InvitationResponded(_Envelope):
    type: Literal["invitation.responded"] = "invitation.responded"
    data: InvitationResponse


Event = Annotated[
    PostUpserted | PostDeleted | PersonErased | ExpertsMatched | InvitationResponded,
    Field(discriminator="type"),
]

KNOWN_TYPES = frozenset(
    {"post.upserted", "post.deleted", "person.erased", "experts.matched", "invitation.responded"}
)

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


class _AnyEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str


class UndecodableEvent(ValueError):
    """A message that is not a valid event: it goes to the dead-letter topic."""


def decode_event(raw: bytes) -> Event | None:
    """Parse a message value; None for a well-formed event of a type this version does not know."""
    try:
        kind = _AnyEnvelope.model_validate_json(raw).type
        if kind not in KNOWN_TYPES:
            return None
        return _event_adapter.validate_json(raw)
    except ValidationError as exc:
        raise UndecodableEvent(str(exc)) from exc


AnyEvent = PostUpserted | PostDeleted | PersonErased | ExpertsMatched | InvitationResponded


# The CloudEvents Kafka protocol binding, structured content mode: the record's value is the whole
# event in the CloudEvents JSON format (`tenant` is an extension attribute), this header says so,
# and the record's key is the event's `partitionkey`.
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
EVENT_HEADERS: tuple[tuple[str, bytes], ...] = (("content-type", CONTENT_TYPE.encode()),)


def encode_event(event: AnyEvent) -> bytes:
    return event.model_dump_json().encode()


def event_key(event: AnyEvent) -> bytes:
    """The Kafka key: the thread for posts, matches and responses (one thread stays ordered), else the person."""
    match event:
        case PostUpserted(data=post):
            key = post.thread_id
        case PostDeleted(data=ref):
            key = ref.thread_id or ref.post_id
        case ExpertsMatched(data=match):
            key = match.question.thread_id
        case InvitationResponded(data=response):
            key = response.thread_id
        case PersonErased(data=ref):
            key = ref.person_id
    return f"{event.tenant}/{key}".encode()
