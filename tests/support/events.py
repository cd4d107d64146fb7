"""Small events for tests of the plumbing (loops, outbox), where what a post says does not matter."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import (
    AnyEvent,
    Candidate,
    ExpertsMatched,
    InvitationResponded,
    InvitationResponse,
    Match,
    PersonErased,
    PersonRef,
    Post,
    PostDeleted,
    PostKind,
    PostRef,
    PostUpserted,
    Question,
    ResponseKind,
)


def answer_event(n: int, *, threads: int = 3) -> PostUpserted:
    """Answer `p{n}` of tenant acme, in one of `threads` threads."""
    return PostUpserted(
        tenant="acme",
        data=Post(
            id=f"p{n}", tenant="acme", thread_id=f"t{n % threads}", author_id="u1",
            kind=PostKind.ANSWER, body=f"body {n}", created_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    )


def one_of_each_event() -> list[AnyEvent]:
    """Every event type once, in the order of shared/events.py."""
    question = Question(post_id="q1", thread_id="t1", author_id="asker", title="Slow ORDER BY", excerpt="It takes seconds.")
    return [
        answer_event(1),
        PostDeleted(tenant="acme", data=PostRef(post_id="p1", thread_id="t1")),
        PersonErased(tenant="acme", data=PersonRef(person_id="u1")),
        ExpertsMatched(tenant="acme", data=Match(question=question, candidates=(Candidate(person_id="ann", score=0.8),))),
        InvitationResponded(tenant="acme", data=InvitationResponse(
            invitation_id="i1", thread_id="t1", person_id="ann", response=ResponseKind.ACCEPTED,
            question_post_id="q1", responded_at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        )),
    ]
