"""Small events for tests: plumbing posts (loops, outbox) where what a post says does not matter, and
the matcher's answers the notifier receives."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from shared.events import (
    AnyEvent,
    Candidate,
    Evidence,
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
    question = Question(
        post_id="q1", thread_id="t1", author_id="asker", title="Slow ORDER BY", excerpt="It takes seconds."
    )
    return [
        answer_event(1),
        PostDeleted(tenant="acme", data=PostRef(post_id="p1", thread_id="t1")),
        PersonErased(tenant="acme", data=PersonRef(person_id="u1")),
        ExpertsMatched(
            tenant="acme", data=Match(question=question, candidates=(Candidate(person_id="ann", score=0.8),))
        ),
        InvitationResponded(tenant="acme", data=InvitationResponse(
            invitation_id="i1", thread_id="t1", person_id="ann", response=ResponseKind.ACCEPTED,
            question_post_id="q1", responded_at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        )),
    ]


def matched(
    *people: str,
    thread: str = "t1",
    tenant: str = "acme",
    asker: str = "asker",
    participants: Sequence[str] = (),
    accepted: bool = False,
    at: datetime | None = None,
    posted_at: datetime | None = None,
) -> ExpertsMatched:
    """The matcher's answer to question `{thread}-q`: `people` best first (scores 1.0, 0.9, ...).

    Each has the same evidence, an answer titled "Vault" (`accepted` or not, `posted_at` if
    given); the match is ranked `at` (default: now).
    """
    question = Question(post_id=f"{thread}-q", thread_id=thread, author_id=asker, title="Rotate Vault?", excerpt="How?")
    evidence = Evidence(
        post_id="p1", thread_id="t0", kind=PostKind.ANSWER, title="Vault", snippet="s", similarity=0.8,
        accepted=accepted, created_at=posted_at,
    )
    candidates = tuple(
        Candidate(person_id=person, score=1.0 - rank / 10, evidence=(evidence,)) for rank, person in enumerate(people)
    )
    match = Match(question=question, candidates=candidates, participants=tuple(participants))
    return ExpertsMatched(tenant=tenant, data=match, **({"time": at} if at else {}))
