"""The replay's time discipline: a test question sees only its past, never itself, its answers or its asker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from services.evaluation.replay import (
    MatcherSystem,
    SimulatedInvitations,
    never_publish,
    pick_test_questions,
    relevant_people,
    replay,
)
from services.matcher.service import MatcherService
from shared.events import ResponseKind
from shared.stackexchange import DumpPost
from tests.fakes import FakeEmbedder, InMemoryIndex

pytestmark = pytest.mark.unit

T0 = datetime(2020, 1, 1, tzinfo=UTC)


def dump_post(pid: int, kind: str, author: str, thread: int, body: str, *, title: str | None = None,
              accepted: bool = False, day: int | None = None) -> DumpPost:
    return DumpPost(
        id=str(pid), kind=kind, thread_id=str(thread), author_id=author, title=title, body=body, tags=(),
        created_at=T0 + timedelta(days=pid if day is None else day), score=0, accepted=accepted,
        accepted_answer_id=None,
    )


def q(pid, author, title, body="", **kw):
    return dump_post(pid, "question", author, pid, body or title, title=title, **kw)


def a(pid, author, thread, body, **kw):
    return dump_post(pid, "answer", author, thread, body, **kw)


# Two training threads, then two test questions (the last 2 of 4 questions at fraction 0.5).
POSTS = [
    q(1, "ann", "sourdough starter feeding"),
    a(2, "bob", 1, "feed the sourdough starter twice a day", accepted=True),
    q(3, "cat", "espresso grind size"),
    a(4, "dan", 3, "a finer espresso grind slows the shot", accepted=True),
    a(5, "ann", 3, "espresso grind matters less than dose"),
    q(6, "bob", "sourdough starter smells of acetone"),  # test: bob asks, bob never a candidate
    a(7, "ann", 6, "your sourdough starter is hungry", accepted=True),
    a(8, "bob", 6, "thanks, fed it"),  # the asker answering himself is not relevant
    q(9, "eve", "espresso grind for a new burr grinder"),  # test
    a(10, "dan", 9, "start with a fine espresso grind", accepted=True),
    a(11, "zed", 9, "ask the shop for an espresso grind"),  # zed never posted before
]


class Spy:
    """A system that remembers what it had seen whenever it was asked to rank."""

    name = "spy"

    def __init__(self, answer: Sequence[str] = ()) -> None:
        self.seen: list[str] = []
        self.seen_at_rank: dict[str, list[str]] = {}
        self.answer = list(answer)

    async def observe(self, posts):
        self.seen += [p.id for p in posts]

    async def rank(self, question, *, limit):
        self.seen_at_rank[question.id] = list(self.seen)
        return self.answer[:limit]


def test_the_last_fraction_of_questions_are_the_tests():
    assert pick_test_questions(POSTS, 0.5) == {"6", "9"}
    assert pick_test_questions(POSTS, 0.25) == {"9"}


def test_relevance_is_the_accepted_answerer_or_any_answerer_but_never_the_asker():
    relevant = relevant_people(POSTS)
    assert relevant["6"] == {"acc": {"ann"}, "any": {"ann"}}
    assert relevant["9"] == {"acc": {"dan"}, "any": {"dan", "zed"}}


async def test_a_test_question_sees_only_the_posts_before_it():
    spy = Spy()
    await replay(POSTS, [spy], test_fraction=0.5)
    assert spy.seen_at_rank == {"6": ["1", "2", "3", "4", "5"], "9": ["1", "2", "3", "4", "5", "6", "7", "8"]}
    # Everything is observed in the end, in time order.
    assert spy.seen == [str(i) for i in range(1, 12)]


async def test_the_asker_is_dropped_from_any_ranking_and_coverage_counts_known_answerers():
    spy = Spy(answer=["bob", "ann", "dan"])
    result = await replay(POSTS, [spy], test_fraction=0.5)
    rankings = {j.question_id: j.rankings["spy"] for j in result.judged}
    assert rankings == {"6": ["ann", "dan"], "9": ["bob", "ann", "dan"]}
    # Both accepted answerers (ann, dan) had posted before their questions.
    assert result.coverage == 1.0
    assert result.n_test == 2


async def test_expertmatch_ranks_through_the_matcher_with_the_questions_own_past():
    embedder, index = FakeEmbedder(), InMemoryIndex()
    service = MatcherService(index=index, embedder=embedder, publish=never_publish)
    matcher = MatcherSystem(service, embedder)

    result = await replay(POSTS, [matcher], test_fraction=0.5)

    rankings = {j.question_id: j.rankings["expertmatch"] for j in result.judged}
    # bob asked about sourdough: ann (who answered on espresso too) and dan, never bob himself.
    assert "bob" not in rankings["6"]
    assert rankings["6"][0] == "ann"
    # eve's espresso question: dan and ann answered espresso before; zed had not posted yet.
    assert set(rankings["9"][:2]) == {"dan", "ann"}
    assert "zed" not in rankings["9"]
    assert len(matcher.rank_ms) == 2
    assert await index.count("eval") == len(POSTS)


async def test_recency_is_measured_from_when_the_question_was_asked():
    embedder, index = FakeEmbedder(), InMemoryIndex()
    # The service's clock is years later: ranking a replayed question must not use it.
    service = MatcherService(index=index, embedder=embedder, publish=never_publish,
                             clock=lambda: T0 + timedelta(days=5000))
    matcher = MatcherSystem(service, embedder)
    await matcher.observe(POSTS[:2])
    vector = embedder.vector("sourdough starter")

    ranked = await service.rank_question(
        tenant="eval", vector=vector, text="sourdough starter", asker="zed", thread_id="99", audience=(),
        now=POSTS[1].created_at + timedelta(days=1), limit=5,
    )
    candidates, participants = ranked.candidates, ranked.participants

    assert [c.person_id for c in candidates] == ["bob", "ann"]
    # bob answered the day before: recent activity, which a clock 5000 days on would not see.
    assert candidates[0].parts["activity"] > 0
    assert participants == ["zed"]


def test_simulated_invitations_feed_back_the_real_outcome():
    question = POSTS[8]  # eve's espresso question, answered by dan (day 10) and zed
    answered = {"dan": POSTS[9].created_at, "zed": POSTS[10].created_at}
    silent_declines = SimulatedInvitations(invited=2)
    silent_not_mine = SimulatedInvitations(invited=3, silence=ResponseKind.NOT_MY_AREA)

    said = silent_declines.responses(question, ["dan", "ann", "bob"], answered, "eval")
    told = silent_not_mine.responses(question, ["dan", "ann", "bob"], answered, "eval")

    assert [(r.data.person_id, r.data.response, r.data.responded_at) for r in said] == [
        ("dan", ResponseKind.ANSWERED, POSTS[9].created_at),
        ("ann", ResponseKind.DECLINED, question.created_at + timedelta(days=1)),
    ]
    assert [r.data.response for r in told] == [
        ResponseKind.ANSWERED,
        ResponseKind.NOT_MY_AREA,
        ResponseKind.NOT_MY_AREA,
    ]
    assert {(r.data.question_post_id, r.data.thread_id, r.tenant) for r in told} == {("9", "9", "eval")}


async def test_a_feedback_system_hears_its_invitations_outcome_after_the_question_is_indexed():
    embedder, index = FakeEmbedder(), InMemoryIndex()
    service = MatcherService(index=index, embedder=embedder, publish=never_publish)
    plain = MatcherSystem(MatcherService(index=InMemoryIndex(), embedder=embedder, publish=never_publish), embedder)
    listening = MatcherSystem(
        service,
        embedder,
        name="expertmatch+feedback",
        feedback=SimulatedInvitations(invited=1, silence=ResponseKind.NOT_MY_AREA),
    )

    result = await replay(POSTS, [plain, listening], test_fraction=0.5)

    # Both rank the first test question alike; only the listening one was told how it went.
    assert result.judged[0].rankings["expertmatch"] == result.judged[0].rankings["expertmatch+feedback"]
    top_of_six = result.judged[0].rankings["expertmatch+feedback"][0]
    top_of_nine = result.judged[1].rankings["expertmatch+feedback"][0]
    assert {(k[1], k[2], f.response) for k, f in index.feedback.items()} == {
        ("6", top_of_six, "answered" if top_of_six == "ann" else "not_my_area"),
        ("9", top_of_nine, "answered" if top_of_nine == "dan" else "not_my_area"),
    }
