"""The time-ordered replay: every post is indexed when it appears, each test question ranked as it is asked.

Systems see the same stream and the same exclusions; a test question is ranked before it and its
answers are observed, so nothing from its future can help.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from services.matcher.embedder import Embedder
from services.matcher.service import MatcherService
from services.matcher.texts import contribution_text
from shared.events import (
    InvitationResponded,
    InvitationResponse,
    Post,
    PostKind,
    PostUpserted,
    ResponseKind,
)
from shared.stackexchange import DumpPost
from shared.text import to_plain_text

TENANT = "eval"
RELEVANCES = ("acc", "any")


class System(Protocol):
    name: str

    async def observe(self, posts: Sequence[DumpPost]) -> None:
        """Take in posts, in time order, that appeared since the last call."""
        ...

    async def rank(self, question: DumpPost, *, limit: int) -> list[str]:
        """People for a question just asked, best first; never its asker."""
        ...


@dataclass(frozen=True, slots=True)
class Judged:
    """One test question: each system's ranking and who was relevant to it."""

    question_id: str
    relevant: dict[str, frozenset[str]]  # by relevance
    rankings: dict[str, list[str]]  # by system
    answerer_known: bool | None  # the accepted answerer had posted before; None without one
    # The accepted answerer's accepted answers posted before the question (the most of several); None without one.
    prior_accepted: int | None = None


@dataclass
class ReplayResult:
    judged: list[Judged] = field(default_factory=list)
    n_test: int = 0

    @property
    def coverage(self) -> float:
        """Share of test questions with an accepted answerer who had posted before the question."""
        known = [j.answerer_known for j in self.judged if j.answerer_known is not None]
        return sum(known) / len(known) if known else 0.0


def as_post(post: DumpPost, tenant: str = TENANT) -> Post:
    """A dump post as ingest would publish it: plain-text body, a backfill (it never invites)."""
    return Post(
        id=post.id,
        tenant=tenant,
        thread_id=post.thread_id,
        author_id=post.author_id,
        kind=PostKind(post.kind),
        title=(post.title or "").strip() or None,
        body=to_plain_text(post.body),
        tags=tuple(dict.fromkeys(post.tags)),
        created_at=post.created_at,
        accepted=post.accepted,
        score=post.score,
        backfill=True,
    )


def contribution_texts(posts: Sequence[DumpPost]) -> list[str]:
    """What the matcher embeds for each post: the thread's title, then the plain text."""
    titles = {p.thread_id: as_post(p).title for p in posts if p.kind == "question"}
    return [contribution_text(titles.get(p.thread_id), to_plain_text(as_post(p).body)) for p in posts]


def relevant_people(posts: Sequence[DumpPost]) -> dict[str, dict[str, frozenset[str]]]:
    """Per question id: its accepted answerer (`acc`) and everyone who answered (`any`), never the asker."""
    answerers: dict[str, set[str]] = defaultdict(set)
    accepted: dict[str, set[str]] = defaultdict(set)
    for post in _answers_by_others(posts):
        answerers[post.thread_id].add(post.author_id)
        if post.accepted:
            accepted[post.thread_id].add(post.author_id)
    questions = [p.id for p in posts if p.kind == "question"]
    return {qid: {"acc": frozenset(accepted[qid]), "any": frozenset(answerers[qid])} for qid in questions}


def first_answers(posts: Sequence[DumpPost]) -> dict[str, dict[str, datetime]]:
    """Per question id: when each answerer (never the asker) first answered it."""
    first: dict[str, dict[str, datetime]] = defaultdict(dict)
    for post in _answers_by_others(posts):
        first[post.thread_id].setdefault(post.author_id, post.created_at)
    return first


def _answers_by_others(posts: Sequence[DumpPost]) -> Iterator[DumpPost]:
    """The answers, in order, except those by their own question's asker."""
    askers = {p.id: p.author_id for p in posts if p.kind == "question"}
    return (p for p in posts if p.kind == "answer" and p.author_id != askers.get(p.thread_id))


def pick_test_questions(posts: Sequence[DumpPost], fraction: float) -> set[str]:
    """The last `fraction` of the questions, in time order."""
    questions = [p.id for p in posts if p.kind == "question"]
    count = round(len(questions) * fraction)
    return set(questions[len(questions) - count :]) if count else set()


async def replay(
    posts: Sequence[DumpPost],
    systems: Sequence[System],
    *,
    test_fraction: float,
    depth: int = 100,
    progress: Callable[[int], None] = lambda n: None,
) -> ReplayResult:
    """Feed `posts` (time-ordered) to every system; rank each test question the moment it is asked."""
    tests = pick_test_questions(posts, test_fraction)
    relevant = relevant_people(posts)
    answered = first_answers(posts)
    result = ReplayResult(n_test=len(tests))
    authors_so_far: set[str] = set()
    accepted_so_far: Counter[str] = Counter()
    pending: list[DumpPost] = []
    for post in posts:
        if post.id in tests:
            for system in systems:
                await system.observe(pending)
            progress(len(pending))
            authors_so_far.update(p.author_id for p in pending)
            accepted_so_far.update(p.author_id for p in pending if p.kind == "answer" and p.accepted)
            pending = []
            judged = await _judge(post, systems, relevant[post.id], authors_so_far, accepted_so_far, depth)
            result.judged.append(judged)
            for system in systems:
                # Systems that learn from invitations hear how theirs went; they see it only later.
                if (respond := getattr(system, "respond", None)) is not None:
                    await respond(post, judged.rankings[system.name], answered.get(post.id, {}))
        pending.append(post)
    for system in systems:
        await system.observe(pending)
    progress(len(pending))
    return result


async def _judge(
    question: DumpPost,
    systems: Sequence[System],
    relevant: dict[str, frozenset[str]],
    authors_so_far: set[str],
    accepted_so_far: Counter[str],
    depth: int,
) -> Judged:
    rankings = {}
    for system in systems:
        ranked = await system.rank(question, limit=depth)
        # The asker is never a candidate, whatever a system returns.
        rankings[system.name] = [person for person in ranked if person != question.author_id][:depth]
    accepted = relevant["acc"]
    return Judged(
        question_id=question.id,
        relevant=relevant,
        rankings=rankings,
        answerer_known=bool(accepted & authors_so_far) if accepted else None,
        prior_accepted=max(accepted_so_far[person] for person in accepted) if accepted else None,
    )


@dataclass(frozen=True, slots=True)
class SimulatedInvitations:
    """The real outcome fed back as responses: the top `invited` of each test question respond.

    An invitee who answered the thread says `answered` when they first answered; one who never
    did says `silence` a `delay` after the question (`declined`, which moves nothing, or the
    stronger assumption `not_my_area`).
    """

    invited: int = 3
    silence: ResponseKind = ResponseKind.DECLINED
    delay: timedelta = timedelta(days=1)

    def responses(
        self, question: DumpPost, ranking: Sequence[str], answered: dict[str, datetime], tenant: str
    ) -> list[InvitationResponded]:
        return [
            InvitationResponded(
                tenant=tenant,
                data=InvitationResponse(
                    invitation_id=f"{question.id}/{person}",
                    thread_id=question.thread_id,
                    person_id=person,
                    response=ResponseKind.ANSWERED if person in answered else self.silence,
                    question_post_id=question.id,
                    question_title=question.title,
                    responded_at=answered.get(person, question.created_at + self.delay),
                ),
            )
            for person in ranking[: self.invited]
        ]


class MatcherSystem:
    """expertmatch itself: posts go through `MatcherService.handle`, questions through `rank_question`.

    With `feedback`, its invitations' outcomes come back through `handle` as the matcher gets them
    live (`invitation.responded`), in the batch after the question itself.
    """

    def __init__(
        self,
        service: MatcherService,
        embedder: Embedder,
        *,
        tenant: str = TENANT,
        name: str = "expertmatch",
        feedback: SimulatedInvitations | None = None,
    ) -> None:
        self.name = name
        self.service = service
        self.tenant = tenant
        self._embedder = embedder
        self._feedback = feedback
        self._responses: list[InvitationResponded] = []
        self.rank_ms: list[float] = []
        self.pools: dict[str, frozenset[str]] = {}  # by question id: everyone its ranking considered
        self.closeness: dict[str, dict[str, float]] = {}  # by question id, then ranked person

    async def observe(self, posts: Sequence[DumpPost]) -> None:
        events: list[object] = [PostUpserted(tenant=self.tenant, data=as_post(p, self.tenant)) for p in posts]
        events += self._responses
        self._responses = []
        if events:
            await self.service.handle(events)

    async def respond(self, question: DumpPost, ranking: Sequence[str], answered: dict[str, datetime]) -> None:
        if self._feedback is not None:
            self._responses += self._feedback.responses(question, ranking, answered, self.tenant)

    async def rank(self, question: DumpPost, *, limit: int) -> list[str]:
        post = as_post(question, self.tenant)
        text = contribution_text(post.title, to_plain_text(post.body))
        [vector] = await self._embedder.embed([text])
        # Live, a refit runs beside the ranking; here it finishes first, so every run is the same.
        await self.service.trainer.settle(self.tenant)
        started = time.perf_counter()
        ranked = await self.service.rank_question(
            tenant=self.tenant,
            vector=vector,
            text=text,
            tags=post.tags,
            asker=post.author_id,
            thread_id=post.thread_id,
            audience=post.audience,
            now=post.created_at,
            limit=limit,
        )
        self.rank_ms.append((time.perf_counter() - started) * 1000)
        self.pools[question.id] = ranked.pool
        self.closeness[question.id] = {c.person_id: c.closeness or 0.0 for c in ranked.candidates}
        return [candidate.person_id for candidate in ranked.candidates]


async def never_publish(matches: Sequence[object]) -> None:
    """Replayed posts are backfill, so the service never matches them; if it did, that is a bug."""
    raise AssertionError(f"a replayed backfill post produced {len(matches)} match(es)")
