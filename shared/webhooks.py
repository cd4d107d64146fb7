"""The webhook the intranet receives, `invitation.created`: not a Kafka event, the notifier signs and sends it.

Its JSON Schema is published at docs/schemas/invitation.created.json (`make schemas`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import PostKind, TrackRecord


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


INVITATION_CREATED = "invitation.created"


class WebhookQuestion(_Frozen):
    """The question the invitee is asked to answer."""

    post_id: str = Field(description="The question's post id, as the intranet sent it to ingest.",
                         examples=["p-1001"])
    title: str | None = Field(description="The question's title, plain text, as ingest stored it.",
                              examples=["How do we rotate the Vault token used by CI?"])
    url: str | None = Field(description="The link to the question that ingest was given, if any.",
                            examples=["https://intranet.example/t/17"])
    excerpt: str = Field(description="The start of the question's plain text, cut at a word after at most 280 "
                         "characters.", examples=["The token expires on Friday. Who has done this before?"])


class WebhookEvidence(_Frozen):
    """One of the invitee's posts that matches the question."""

    post_id: str = Field(description="The post's id, as ingest was given it.", examples=["p-2"])
    title: str | None = Field(description="The post's title as plain text; `null` on most replies.",
                              examples=["Vault token renewal in pipelines"])
    snippet: str = Field(description="The start of the post's plain text, cut at a word after at most 280 "
                         "characters.", examples=["We renew it from the pipeline with a periodic token."])
    url: str | None = Field(description="The link back to the post that ingest was given (`url`), `null` when it "
                            "was given none, or the post was indexed before links were kept.",
                            examples=["https://intranet.example/t/9#p-88"])
    similarity: float = Field(description="Cosine similarity of the post to the question, -1 to 1; 0 for a post "
                              "found by its words alone.", examples=[0.71])
    kind: PostKind = Field(description="Whether the post is a question, an answer or a comment.", examples=["answer"])
    accepted: bool = Field(description="Whether the asker accepted this answer.", examples=[True])


class InvitationData(_Frozen):
    """Who is invited to which question, and why."""

    invitation_id: str = Field(description="One per tenant, thread and person: deduplicate on it.",
                               examples=["inv_5c0d2e6f7a8b4c9d0e1f2a3b4c5d6e7f"])
    thread_id: str = Field(description="The question's thread.", examples=["t-17"])
    question: WebhookQuestion = Field(description="The question to answer.")
    person_id: str = Field(description="The invitee, as the posts' `author_id` names them.", examples=["u-dan"])
    score: float = Field(description="Their score when ranked: their lead over the weakest candidate found.",
                         examples=[2.31])
    why: str = Field(description="One sentence of facts about the invitee, for the invitation's text.",
                     examples=["You answered “Vault token renewal in pipelines” (accepted)."])
    evidence: tuple[WebhookEvidence, ...] = Field(description="Their posts that best match, best first.")
    parts: dict[str, float] = Field(
        description="The score's parts (`similarity`, `lexical`, `activity`, `answers`, `accepted`, `tags`, "
        "`feedback`), as leads over the weakest candidate; they sum to the score.",
        examples=[{"similarity": 1.42, "lexical": 0.31, "activity": 0.58}],
    )
    closeness: float | None = Field(description="Cosine similarity to the question of their closest answer the "
                                    "readers may see; `null` from a matcher older than the field.", examples=[0.71])
    track_record: TrackRecord | None = Field(description="The counts the `why` states; `null` from a matcher older "
                                             "than the field.")


# Written out, not built from the fields' examples: FastAPI drops the null members of a document's
# examples, and an example with a null link would lack a required field.
_INVITATION_EXAMPLE = {
    "type": INVITATION_CREATED,
    "timestamp": "2025-05-02T09:30:04.123456+00:00",
    "data": {
        "invitation_id": "inv_5c0d2e6f7a8b4c9d0e1f2a3b4c5d6e7f",
        "thread_id": "t-17",
        "question": {"post_id": "p-1001", "title": "How do we rotate the Vault token used by CI?",
                     "url": "https://intranet.example/t/17",
                     "excerpt": "The token expires on Friday. Who has done this before?"},
        "person_id": "u-dan",
        "score": 2.31,
        "why": "You answered “Vault token renewal in pipelines” (accepted).",
        "evidence": [{"post_id": "p-88", "title": "Vault token renewal in pipelines",
                      "snippet": "We renew it from the pipeline with a periodic token.",
                      "url": "https://intranet.example/t/9#p-88",
                      "similarity": 0.71, "kind": "answer", "accepted": True}],
        "parts": {"similarity": 1.42, "lexical": 0.31, "activity": 0.22, "answers": 0.18, "accepted": 0.12,
                  "tags": 0.06},
        "closeness": 0.71,
        "track_record": {"answers": 9, "accepted": 3, "answers_last_30_days": 4, "answers_last_90_days": 7,
                         "tags": [{"tag": "vault", "answers": 3, "accepted": 2}], "answered_nearby": 1,
                         "not_my_area_nearby": 0},
    },
}


class InvitationCreated(_Frozen):
    """The body of an `invitation.created` webhook, byte for byte what is signed."""

    model_config = ConfigDict(json_schema_extra={"examples": [_INVITATION_EXAMPLE]})

    type: Literal["invitation.created"] = Field(
        default=INVITATION_CREATED, description="Always `invitation.created`, the kind of webhook.",
        examples=[INVITATION_CREATED],
    )
    timestamp: str = Field(description="When the invitation was created, ISO 8601 with its offset.",
                           examples=["2025-05-02T09:30:04.123456+00:00"])
    data: InvitationData = Field(description="The invitation.")
