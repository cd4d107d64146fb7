"""Learning to rank per tenant: the fit, the fusion it replaces, and training only on the past."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.matcher.features import FEATURE_NAMES
from services.matcher.scorer import (
    NON_NEGATIVE,
    Example,
    FitSettings,
    _padded,
    _Problem,
    fit,
    fusion_scorer,
    mean_reciprocal_rank,
)
from services.matcher.service import MatcherService, RankingPolicy
from services.matcher.training import TrainingPolicy
from shared.events import Post, PostKind, PostUpserted
from tests.fakes import FakeEmbedder, InMemoryIndex

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TAGS = FEATURE_NAMES.index("tags")


def synthetic_examples(count: int, *, seed: int = 7, signal: int = TAGS) -> list[Example]:
    """Lists of 20 candidates where the accepted answerer leads on one feature; the rest is noise."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        values = rng.normal(size=(20, len(FEATURE_NAMES)))
        positive = int(rng.integers(20))
        values[positive, signal] = values[:, signal].max() + 0.5
        examples.append(Example(values=values, positive=positive))
    return examples


def test_the_fit_finds_the_feature_that_marks_the_expert():
    train, held_out = synthetic_examples(200), synthetic_examples(100, seed=8)

    scorer = fit(train)

    assert np.argmax(scorer.weights) == TAGS
    assert mean_reciprocal_rank(scorer, held_out) > 0.95
    assert mean_reciprocal_rank(fusion_scorer(), held_out) < 0.5
    assert scorer.examples == 200


def correlated_examples(count: int, *, seed: int = 5) -> list[Example]:
    """Features as real ones are: near-copies of each other and long-tailed, the expert ahead on a few."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        base = rng.exponential(size=(300, 1)) ** 2
        values = base + 0.05 * rng.normal(size=(300, len(FEATURE_NAMES)))
        positive = int(np.argsort(base[:, 0])[-1 - int(rng.integers(5))])
        examples.append(Example(values=values, positive=positive))
    return examples


def test_the_fit_settles_at_its_one_minimum_on_correlated_long_tailed_features():
    examples = correlated_examples(200)

    scorer = fit(examples)
    # The same examples laid out in memory another way: the same minimum, to rounding.
    again = fit([Example(values=np.asfortranarray(e.values), positive=e.positive) for e in examples])

    assert np.allclose(scorer.weights, again.weights, atol=1e-5)
    # At the minimum of a box-constrained convex problem (KKT): the gradient vanishes on every
    # free weight, and on a weight held at its bound of 0 it points only further down.
    problem = _Problem(*_padded(examples, scorer.center, scorer.scale))
    problem.prior = problem.scaled_fusion(scorer.scale)
    problem.strength = FitSettings().l2 + FitSettings().prior_examples / len(examples)
    _, gradient = problem.loss_and_gradient(scorer.weights)
    held = np.array([name in NON_NEGATIVE for name in FEATURE_NAMES]) & (scorer.weights < 1e-8)
    assert np.abs(gradient[~held]).max() < 1e-4
    assert (gradient[held] > -1e-4).all()


ANSWERS = FEATURE_NAMES.index("answers")


def newcomer_examples(count: int, *, seed: int = 11) -> list[Example]:
    """A history where the accepted answerer always has the fewest answers of their question's candidates."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        values = rng.normal(size=(20, len(FEATURE_NAMES)))
        positive = int(rng.integers(20))
        values[positive, ANSWERS] = values[:, ANSWERS].min() - 0.5
        values[positive, TAGS] = values[:, TAGS].max() + 0.5
        examples.append(Example(values=values, positive=positive))
    return examples


def test_a_feature_that_speaks_for_a_person_is_never_weighed_against_them():
    """Answering more never counts against anyone, however the history happened to fall."""
    scorer = fit(newcomer_examples(200))

    assert "answers" in NON_NEGATIVE
    assert scorer.weights[ANSWERS] == pytest.approx(0.0, abs=1e-9)
    assert scorer.weights[TAGS] > 0.5
    # So nobody gains from having fewer answers: two people alike but for that score the same.
    few, many = np.zeros(len(FEATURE_NAMES)), np.zeros(len(FEATURE_NAMES))
    many[ANSWERS] = 3.0
    assert scorer.scores(np.vstack([few, many]))[0] <= scorer.scores(np.vstack([few, many]))[1]


SINCE_LAST = FEATURE_NAMES.index("since_last")


def half_fusion_examples(count: int, *, seed: int = 7) -> list[Example]:
    """The accepted answerer leads a little on what the fusion weighs, and much on `since_last`,
    which it barely weighs."""
    rng = np.random.default_rng(seed)
    fusion = fusion_scorer().weights
    examples = []
    for _ in range(count):
        values = rng.normal(size=(20, len(FEATURE_NAMES)))
        positive = int(rng.integers(20))
        values[positive] += 0.5 * fusion
        values[positive, SINCE_LAST] += 1.5
        examples.append(Example(values=values, positive=positive))
    return examples


def test_a_tenant_with_few_examples_stays_close_to_the_fusion():
    """The fusion is the prior: the same evidence bends it less when it comes from fewer questions."""
    few = half_fusion_examples(25)

    def pull_from_fusion(examples: list[Example], settings: FitSettings = FitSettings()) -> float:
        scorer = fit(examples, settings)
        problem = _Problem(*_padded(examples, scorer.center, scorer.scale))
        prior = problem.scaled_fusion(scorer.scale)
        return float(np.linalg.norm(scorer.weights - prior) / np.linalg.norm(prior))

    # The same questions ten times over: the same mean loss, a tenth of the prior's say.
    assert pull_from_fusion(few) < 0.7 * pull_from_fusion(few * 10)
    # A prior worth a million questions is all there is; with none, the data decides.
    assert pull_from_fusion(few, FitSettings(prior_examples=1e6)) < 0.01
    assert pull_from_fusion(few, FitSettings(prior_examples=0.0)) > 1.5 * pull_from_fusion(few)


def _post(
    pid: int, kind: PostKind, author: str, thread: int, text: str, *, day: int, accepted: bool = False
) -> PostUpserted:
    return PostUpserted(
        tenant="acme",
        data=Post(
            id=str(pid),
            tenant="acme",
            thread_id=str(thread),
            author_id=author,
            kind=kind,
            title=text if kind is PostKind.QUESTION else None,
            body=text,
            tags=("brewing",) if kind is PostKind.QUESTION else (),
            created_at=T0 + timedelta(days=day),
            accepted=accepted,
            backfill=True,
        ),
    )


def history(questions: int) -> list[PostUpserted]:
    """Each question gets an answer from `busy` (most active) and an accepted one from the topic's expert."""
    events, pid = [], 0
    for n in range(questions):
        topic, expert = ("espresso grind", "ema") if n % 2 else ("sourdough starter", "sam")
        thread = pid = pid + 1
        events.append(_post(pid, PostKind.QUESTION, f"asker{n}", thread, f"{topic} question {n}", day=2 * n))
        pid += 1
        events.append(_post(pid, PostKind.ANSWER, "busy", thread, f"{topic} guess", day=2 * n + 1))
        pid += 1
        events.append(_post(pid, PostKind.ANSWER, expert, thread, f"{topic} answer", day=2 * n + 1, accepted=True))
        pid += 1
        events.append(_post(pid, PostKind.ANSWER, "busy", 10_000 + n, "unrelated chatter", day=2 * n + 1))
    return events


async def test_a_tenant_learns_its_experts_from_its_past_and_only_from_it():
    index, embedder = InMemoryIndex(), FakeEmbedder()
    policy = RankingPolicy(training=TrainingPolicy(min_examples=10, retrain_every=10, window=50))
    service = MatcherService(index=index, embedder=embedder, publish=lambda m: None, policy=policy)
    await service.handle(history(30))

    await service.trainer.settle("acme")

    scorer = service.trainer.scorer("acme")
    # The first question of each topic is no example: its expert had not posted before it.
    assert scorer.examples == 28
    candidates = (await service.rank_question(
        tenant="acme", vector=embedder.vector("espresso grind question"), text="espresso grind question",
        tags=("brewing",), asker="new", thread_id="new", audience=(), now=T0 + timedelta(days=100), limit=3,
    )).candidates
    assert candidates[0].person_id == "ema"
    # Nothing new was accepted since: no refit is due.
    assert service.trainer.schedule("acme") is None


async def test_a_restarted_matcher_reads_its_tenants_history_back_from_the_index():
    index, embedder = InMemoryIndex(), FakeEmbedder()
    policy = RankingPolicy(training=TrainingPolicy(min_examples=10, retrain_every=10, window=50))
    first = MatcherService(index=index, embedder=embedder, publish=lambda m: None, policy=policy)
    await first.handle(history(30))
    await first.trainer.settle("acme")

    # A new process on the same index: its first question reads the tenant's past back.
    restarted = MatcherService(index=index, embedder=embedder, publish=lambda m: None, policy=policy)
    assert restarted.trainer.scorer("acme").examples == 0
    await restarted.rank_question(
        tenant="acme", vector=embedder.vector("espresso grind question"), text="espresso grind question",
        tags=("brewing",), asker="new", thread_id="new", audience=(), now=T0 + timedelta(days=100), limit=3,
    )
    await restarted.trainer.settle("acme")

    relearned, learned = restarted.trainer.scorer("acme"), first.trainer.scorer("acme")
    assert relearned.examples == learned.examples == 28
    assert relearned.weights == pytest.approx(learned.weights)


async def test_a_backfilled_tenant_learns_its_first_model_once_the_consumer_has_caught_up():
    """Not from an index still filling, and not only at its first question."""
    index, embedder = InMemoryIndex(), FakeEmbedder()
    policy = RankingPolicy(training=TrainingPolicy(min_examples=10, retrain_every=10, window=50))
    service = MatcherService(index=index, embedder=embedder, publish=lambda m: None, policy=policy)
    events = history(30)

    for start in range(0, len(events), 16):
        await service.handle(events[start : start + 16])
        await asyncio.sleep(0)
        assert service.trainer.scorer("acme").examples == 0  # still arriving: nothing fit yet

    await service.caught_up()
    await service.trainer.settle("acme")
    assert service.trainer.scorer("acme").examples == 28
    # A tenant that has its model refits with its questions, not with every quiet moment.
    await service.handle(history(31)[-4:])
    await service.caught_up()
    assert service.trainer.schedule("acme") is None


async def test_a_first_fit_with_too_few_usable_examples_is_tried_again_when_more_arrive():
    index, embedder = InMemoryIndex(), FakeEmbedder()
    policy = RankingPolicy(training=TrainingPolicy(min_examples=10, retrain_every=10, window=50))
    service = MatcherService(index=index, embedder=embedder, publish=lambda m: None, policy=policy)
    events = history(30)
    # The accepted answers of the first 11 questions, without the earlier posts that make them examples.
    await service.handle(events[:44])
    await service.caught_up()
    await service.trainer.settle("acme")
    assert service.trainer.scorer("acme").examples == 0

    # Five more questions, fewer than a refit waits for: the first fit is still due.
    await service.handle(events[44:64])
    await service.caught_up()
    await service.trainer.settle("acme")
    assert service.trainer.scorer("acme").examples == 14


async def test_too_little_history_keeps_the_hand_set_fusion():
    index, embedder = InMemoryIndex(), FakeEmbedder()
    service = MatcherService(index=index, embedder=embedder, publish=lambda m: None)
    await service.handle(history(5))

    await service.trainer.settle("acme")

    assert service.trainer.scorer("acme").examples == 0
    assert service.trainer.schedule("acme") is None


async def test_examples_are_read_as_of_their_questions_time():
    """A later post never leaks into an earlier question's example: its features stay the same."""
    index, embedder = InMemoryIndex(), FakeEmbedder()
    policy = RankingPolicy(training=TrainingPolicy(min_examples=4, retrain_every=4))
    service = MatcherService(index=index, embedder=embedder, publish=lambda m: None, policy=policy)
    events = history(8)
    await service.handle(events[:16])
    await service.trainer.settle("acme")
    early = {k: v.values.copy() for k, v in service.trainer._examples["acme"].items() if v is not None}

    await service.handle(events[16:])
    service.trainer.forget("acme")
    await service.trainer.settle("acme")

    late = service.trainer._examples["acme"]
    assert early and all(np.array_equal(late[k].values, v) for k, v in early.items())


async def test_live_ranking_never_waits_for_a_refit():
    index, embedder = InMemoryIndex(), FakeEmbedder()
    policy = RankingPolicy(training=TrainingPolicy(min_examples=10, retrain_every=10))
    service = MatcherService(index=index, embedder=embedder, publish=lambda m: None, policy=policy)
    await service.handle(history(30))

    candidates = (await service.rank_question(
        tenant="acme", vector=embedder.vector("espresso grind"), text="espresso grind", asker="new",
        thread_id="new", audience=(), now=T0 + timedelta(days=100), limit=3,
    )).candidates

    # Ranked by the fusion while the refit it started runs beside it.
    assert candidates and service.trainer.scorer("acme").examples == 0
    refit = service.trainer.schedule("acme")
    assert refit is not None and not refit.done()
    await refit
    assert service.trainer.scorer("acme").examples > 0
