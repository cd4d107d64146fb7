"""The demo corpus ranked by the real model and Qdrant Edge: who would be invited, and whether each "why" is true.

For every demo question, and the question `make run` suggests, the invitees the notifier's policy
picks from the matcher's candidates have all answered a thread on the question's topic (labelled
by hand in the corpus); someone the corpus shows answering the same question before is first, and
its accepted answerer is among them; and every fact a "why" states is true of that person in the
corpus.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.demo.corpus import DemoCorpus, DemoQuestion, load_corpus
from services.matcher.embedder import ThreadedEmbedder, build_embedder
from services.matcher.index import EdgeIndex
from services.matcher.service import MatcherService, RankingPolicy
from services.matcher.settings import MatcherSettings
from services.matcher.texts import contribution_text
from services.notifier.payload import why_you
from services.notifier.policy import InvitePolicy, plan_invitations
from shared.events import Candidate, PostUpserted

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TENANT = "demo"


class CorpusFacts:
    """What the corpus itself says of each person: the threads they answered, with their tags."""

    def __init__(self, corpus: DemoCorpus) -> None:
        questions = {p.thread_id: p for p in corpus.posts if p.kind == "question"}
        self.title = {thread: q.title for thread, q in questions.items()}
        self.answered: dict[str, set[str]] = defaultdict(set)
        self.accepted_in: dict[str, set[str]] = defaultdict(set)
        self.tagged: dict[str, Counter[str]] = defaultdict(Counter)
        self.tagged_accepted: dict[str, Counter[str]] = defaultdict(Counter)
        self.answers: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        for post in corpus.posts:
            if post.kind != "answer":
                continue
            self.answered[post.author_id].add(post.thread_id)
            self.answers[post.author_id] += 1
            self.accepted[post.author_id] += post.accepted
            if post.accepted:
                self.accepted_in[post.author_id].add(post.thread_id)
            for tag in questions[post.thread_id].tags:
                self.tagged[post.author_id][tag] += 1
                self.tagged_accepted[post.author_id][tag] += post.accepted
        self.accepted_answerer = {
            p.thread_id: p.author_id for p in corpus.posts if p.kind == "answer" and p.accepted
        }

    def check_why(self, person: str, why: str) -> list[str]:
        """The statements of `why` that the corpus does not bear out (empty: all true)."""
        wrong = []
        answered_titles = {self.title[t] for t in self.answered[person]}
        for title, accepted in re.findall(r"you answered “([^”]+)”( \(accepted\))?", why, flags=re.I):
            if title not in answered_titles:
                wrong.append(f"{person} never answered {title!r}")
            elif accepted and title not in {self.title[t] for t in self.accepted_in[person]}:
                wrong.append(f"{person}'s answer to {title!r} was not accepted")
        for count, tag, accepted in re.findall(r"(\d+) answers? tagged (\S+?)(?:, (\d+) of them accepted)?[.;]", why):
            if int(count) != self.tagged[person][tag] or int(accepted or 0) != self.tagged_accepted[person][tag]:
                wrong.append(f"{person} has {self.tagged[person][tag]} answers tagged {tag} "
                             f"({self.tagged_accepted[person][tag]} accepted), not {count} ({accepted or 0})")
        for accepted, count in re.findall(r"(\d+) of your (\d+) answers? were accepted", why):
            if (int(accepted), int(count)) != (self.accepted[person], self.answers[person]):
                wrong.append(f"{person} has {self.accepted[person]} of {self.answers[person]} accepted")
        for count in re.findall(r"you have written (\d+) answers?", why, flags=re.I):
            if int(count) != self.answers[person]:
                wrong.append(f"{person} wrote {self.answers[person]} answers, not {count}")
        if not re.search(r"you (answered|asked|commented on) “", why, flags=re.I):
            wrong.append(f"{person}'s why names no post of theirs: {why!r}")
        return wrong


@pytest.fixture(scope="module")
def corpus() -> DemoCorpus:
    return load_corpus()


async def demo_matcher(corpus: DemoCorpus, folder: Path, model: ThreadedEmbedder) -> MatcherService:
    """A matcher that has indexed the demo corpus as backfill in the consumer's batches, and learned
    from it as `make run`'s does: its first model fit starts once the consumer has caught up."""
    index = await EdgeIndex.open(folder / "index")
    service = MatcherService(index=index, embedder=model, publish=_never, policy=RankingPolicy())
    posts = [p.to_post(tenant=TENANT, received_at=NOW) for p in corpus.backfill_as_of(NOW)]
    events = [PostUpserted(tenant=TENANT, data=post) for post in posts]
    size = MatcherSettings().batch_size
    for start in range(0, len(events), size):
        await service.handle(events[start : start + size])
    await service.caught_up()  # as the consumer loop reports it after a poll that brings nothing
    await service.trainer.settle(TENANT)  # the fit that started, which make run waits for
    return service


async def _never(matches) -> None:
    raise AssertionError("the demo corpus is backfill: it never matches")


async def invitees(service: MatcherService, model: ThreadedEmbedder, question: DemoQuestion) -> list[Candidate]:
    """Whom the notifier's default policy would invite first for `question`, asked now."""
    text = contribution_text(question.title, question.body)
    [vector] = await model.embed([text])
    ranked = await service.rank_question(
        tenant=TENANT, vector=vector, text=text, tags=question.tags, asker=question.author_id,
        thread_id=question.id, audience=("public",), now=NOW, limit=RankingPolicy().candidates,
    )
    plan = plan_invitations(
        ranked.candidates, room=InvitePolicy().initial, policy=InvitePolicy(), now=NOW, people={},
        asker=question.author_id, participants=ranked.participants,
    )
    return plan.invite


async def test_every_demo_invitee_has_answered_the_topic_and_every_why_is_true(corpus, tmp_path):
    facts = CorpusFacts(corpus)
    # The model make run's matcher runs: its default backend, as the installation built it.
    settings = MatcherSettings(data_dir=tmp_path)
    model = build_embedder(settings.embedder, batch_size=32, model_dir=settings.model_path)
    service = await demo_matcher(corpus, tmp_path, model)
    problems: list[str] = []
    try:
        assert service.trainer.scorer(TENANT).examples > 0, "the demo tenant should rank with its own learned model"
        for question in [*corpus.demo_questions, corpus.try_question]:
            invited = await invitees(service, model, question)
            on_topic = set(question.on_topic_threads)
            accepted = facts.accepted_answerer[question.matching_thread]
            if not invited:
                problems.append(f"{question.title!r}: nobody invited")
                continue
            if question.matching_thread not in facts.answered[invited[0].person_id]:
                problems.append(
                    f"{question.title!r}: {invited[0].person_id}, first, never answered {question.matching_thread}"
                )
            if accepted not in [c.person_id for c in invited]:
                problems.append(f"{question.title!r}: {accepted}, who answered it before (accepted), is not invited")
            for candidate in invited:
                if not facts.answered[candidate.person_id] & on_topic:
                    problems.append(f"{question.title!r}: {candidate.person_id} has answered nothing on its topic")
                problems += [
                    f"{question.title!r}: {p}" for p in facts.check_why(candidate.person_id, why_you(candidate))
                ]
    finally:
        await service._index.close()
        model.close()
    assert problems == []


def test_the_why_checker_catches_an_untrue_statement(corpus):
    """The oracle above must be able to fail: counts and posts that are not the person's are caught."""
    facts = CorpusFacts(corpus)
    true = "You answered “Terraform plan wants to destroy the catalog RDS instance” (accepted)."
    assert facts.check_why("aisha.bello", true) == []
    assert facts.check_why("tom.becker", true) != []  # never answered it
    assert facts.check_why("aisha.bello", "You have written 99 answers, and " + true[0].lower() + true[1:]) != []
    tagged = (
        "You answered “Terraform plan wants to destroy the catalog RDS instance”; you have 1 answer tagged terraform."
    )
    assert facts.check_why("aisha.bello", tagged) != []
    assert facts.check_why("aisha.bello", "You have been answering a lot lately.") != []
