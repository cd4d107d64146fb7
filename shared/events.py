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

    post_id: str
    thread_id: str
    kind: PostKind
    title: str | None = None
    snippet: str
    url: str | None = None
    similarity: float
    accepted: bool = False
    score: int = 0
    created_at: datetime | None = None


class TagRecord(_Frozen):
    """A person's answers in one of the question's tags."""

    tag: str
    answers: int
    accepted: int = 0


class TrackRecord(_Frozen):
    """What the tenant's posts show of a person, counted up to the start of the question's day (UTC),
    and what they said when invited to questions like this one before it.

    These are the facts a "why you" may state: counts of the person's own answers and responses,
    never a reading of their score.
    """

    answers: int = 0
    accepted: int = 0
    answers_last_30_days: int = 0
    answers_last_90_days: int = 0
    # The question's tags they have answers in, most answered first.
    tags: tuple[TagRecord, ...] = ()
    # Invitations to questions at cosine 0.75 or closer to this one: answered, and called not their area.
    answered_nearby: int = 0
    not_my_area_nearby: int = 0


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
    person_id: str
    score: float
    evidence: tuple[Evidence, ...] = ()
    # The parts the score is made of (ScorePart values), each person's lead over the pool's
    # weakest candidate, for explanations. Keyed by plain strings: a reader meets parts a newer
    # matcher adds without failing.
    parts: dict[str, float] = Field(default_factory=dict)
    # The cosine similarity to the question of the person's closest answer, or of the question of a
    # thread they answered, among the posts the question's readers may see (0: none). None, like a
    # missing track record, from a matcher older than the field.
    closeness: float | None = None
    track_record: TrackRecord | None = None


class Question(_Frozen):
    post_id: str
    thread_id: str
    author_id: str
    title: str | None = None
    excerpt: str
    url: str | None = None
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None


# -- the webhook the intranet receives (not a Kafka event: the notifier signs and sends it) --------

INVITATION_CREATED = "invitation.created"


class WebhookQuestion(_Frozen):
    post_id: str
    title: str | None = Field(description="plain text, as ingest stored it")
    url: str | None
    excerpt: str


class WebhookEvidence(_Frozen):
    post_id: str
    title: str | None
    snippet: str
    url: str | None
    similarity: float = Field(description="cosine similarity of the post to the question")
    kind: PostKind
    accepted: bool


class InvitationData(_Frozen):
    invitation_id: str = Field(description="one per tenant, thread and person: deduplicate on it")
    thread_id: str
    question: WebhookQuestion
    person_id: str
    score: float
    why: str = Field(description="one sentence of facts about the invitee, for the invitation's text")
    evidence: tuple[WebhookEvidence, ...]
    parts: dict[str, float] = Field(
        description="the score's parts (ScorePart values), as leads over the weakest candidate"
    )
    closeness: float | None = Field(description="cosine similarity of their closest answer the readers may see")
    track_record: TrackRecord | None


class InvitationCreated(_Frozen):
    """The body of an `invitation.created` webhook, byte for byte what is signed."""

    type: Literal["invitation.created"] = INVITATION_CREATED
    timestamp: str = Field(description="ISO 8601, when the invitation was created")
    data: InvitationData


class Match(_Frozen):
    question: Question
    candidates: tuple[Candidate, ...]
    # People already in the thread when it was ranked; never invited.
    participants: tuple[str, ...] = ()


def _now() -> datetime:
    return datetime.now(UTC)


class ResponseKind(StrEnum):
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
