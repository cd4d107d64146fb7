"""What the matcher does with a batch of post events, and with a search: index, rank, publish."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.matcher.counts import DailyCounts
from services.matcher.embedder import Embedder
from services.matcher.features import CandidatePool, candidate_features
from services.matcher.feedback import record_response, with_feedback
from services.matcher.index.base import Contribution, ExpertIndex
from services.matcher.posts import contribution_of, plain_body, question_of
from services.matcher.query import QuestionQuery
from services.matcher.ranking import EvidenceOrder, evidence_of, rank_candidates
from services.matcher.texts import contribution_text, visible_to
from services.matcher.training import History, Trainer, TrainingPolicy, past_question
from shared import metrics, tracing
from shared.events import (
    AnyEvent,
    Candidate,
    ExpertsMatched,
    InvitationResponded,
    Match,
    PersonErased,
    Post,
    PostDeleted,
    PostKind,
    PostUpserted,
)
from shared.logs import log_context
from shared.text import to_plain_text

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[ExpertsMatched]], Awaitable[None]]
# Awaited between two embedding calls of one batch: where the batch may let another one go first.
Pause = Callable[[], Awaitable[None]]

_MATCH_NAMESPACE = uuid.UUID("b0b5c1d2-6a37-4c8e-9f11-5e2f7d9a0c44")
# Ranked beyond the limit, in case some of the best have no post the asker may see.
_SPARE = 10


@dataclass(frozen=True, slots=True)
class RankingPolicy:
    candidates: int = 10
    search_depth: int = 300
    lexical_depth: int = 300
    tag_depth: int = 100
    recent_depth: int = 300
    evidence: int = 3
    evidence_order: EvidenceOrder = field(default_factory=EvidenceOrder)
    training: TrainingPolicy = field(default_factory=TrainingPolicy)

    @property
    def pool(self) -> CandidatePool:
        return CandidatePool(
            dense=self.search_depth, lexical=self.lexical_depth, tagged=self.tag_depth, recent=self.recent_depth
        )


@dataclass(frozen=True, slots=True)
class RankedQuestion:
    """The people to invite to a question, best first, the thread's participants, and the whole pool."""

    candidates: list[Candidate]
    participants: list[str]
    pool: frozenset[str]  # every person considered, ranked or not


class MatcherService:
    """Keeps the index in step with the posts topic and finds experts for new questions."""

    def __init__(
        self,
        *,
        index: ExpertIndex,
        embedder: Embedder,
        publish: Publish,
        policy: RankingPolicy = RankingPolicy(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        embed_batch: int = 32,
    ) -> None:
        self._index = index
        self._embedder = embedder
        self._embed_batch = embed_batch
        self._publish = publish
        self._policy = policy
        self._clock = clock
        self._history = History(policy.training.history)
        self._unlearned: set[str] = set()
        self._daily = DailyCounts(index)
        self.trainer = Trainer(
            index=index, history=self._history, pool=policy.pool, policy=policy.training, daily=self._daily
        )

    async def handle(self, events: Sequence[AnyEvent], *, pause: Pause | None = None) -> None:
        """Embed the batch's posts, apply the batch in order, then match its questions.

        Without `pause` the posts are embedded in one call. With it, in calls of `embed_batch`
        texts of similar length, awaiting `pause` between two calls (the matcher's import lane
        lets a live batch in there).
        """
        upserts = [e for e in events if isinstance(e, PostUpserted)]
        for event in upserts:
            if event.data.tenant != event.tenant:
                raise ValueError(f"post {event.data.id}: tenant {event.data.tenant!r} != envelope {event.tenant!r}")
        titles = await self._thread_titles([e.data for e in upserts], pause)
        tags = self._thread_tags([e.data for e in upserts])
        texts = [contribution_text(titles.get((e.tenant, e.data.thread_id)), plain_body(e.data)) for e in upserts]
        with tracing.batch_span("embed", [e.id for e in upserts]):
            vectors = await self._embed(texts, pause)
        contributions = {
            id(event): contribution_of(
                event.data,
                titles.get((event.tenant, event.data.thread_id)),
                vector,
                tags.get((event.tenant, event.data.thread_id), ()),
            )
            for event, vector in zip(upserts, vectors, strict=True)
        }
        with tracing.batch_span("index", [e.id for e in events]):
            questions = await self._apply(events, contributions, pause)
        self._remember(upserts, contributions)
        # Tenants still ranked by the fusion learn their first model once the posts have stopped
        # coming (see caught_up), not from examples read off an index still filling.
        self._unlearned.update(e.tenant for e in upserts if not self.trainer.scorer(e.tenant).examples)
        for event in events:
            if isinstance(event, InvitationResponded):
                await record_response(self._index, event)
        matches = [await self._traced_match(event, contributions[id(event)]) for event in questions]
        if matches:
            with tracing.batch_span("publish matches", [e.id for e in questions]):
                await self._publish(matches)
            metrics.QUESTIONS_MATCHED.inc(len(matches))

    async def _embed(self, texts: list[str], pause: Pause | None) -> list[list[float]]:
        if pause is None:
            return await self._embedder.embed(texts)
        # By length as the model counts it (tokens, cut to its maximum): each call then pads its texts
        # to about their own length, as one call over the whole batch would.
        lengths = await self._embedder.lengths(texts)
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self._embed_batch):
            if start:
                await pause()
            chunk = order[start:start + self._embed_batch]
            for i, vector in zip(chunk, await self._embedder.embed([texts[i] for i in chunk]), strict=True):
                vectors[i] = vector
        return vectors

    async def caught_up(self) -> None:
        """The consumer has caught up with the posts: start the first fit of tenants that got posts and have no model.

        A tenant's first model then need not wait for its first question (a backfill is enough),
        and its training examples are read off the index once the backfill is in, not while it
        fills; later refits follow the questions.
        """
        tenants, self._unlearned = self._unlearned, set()
        for tenant in tenants:
            self.trainer.schedule(tenant)

    async def search(
        self,
        *,
        tenant: str,
        text: str,
        limit: int,
        audience: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> list[Candidate]:
        """Who knows about `text`: the ranked people of one tenant, for readers of `audience`."""
        plain = to_plain_text(text)
        [vector] = await self._embedder.embed([contribution_text(None, plain)])
        query = QuestionQuery(
            tenant=tenant,
            vector=vector,
            text=plain,
            tags=(),
            now=self._clock(),
            audiences=visible_to(audience),
            exclude_authors=tuple(exclude),
        )
        candidates, _ = await self._rank(query, limit=limit)
        return candidates

    async def _thread_titles(
        self, posts: Sequence[Post], pause: Pause | None = None
    ) -> dict[tuple[str, str], str | None]:
        """Each reply's thread title: from a root in the batch, else from the index (with `pause`
        awaited between every `embed_batch` look-ups, as between embedding calls)."""
        titles = {(p.tenant, p.thread_id): p.title for p in posts if p.kind is PostKind.QUESTION}
        looked_up = 0
        for post in posts:
            key = (post.tenant, post.thread_id)
            if key not in titles:
                if pause is not None and looked_up and looked_up % self._embed_batch == 0:
                    await pause()
                titles[key] = (await self._index.thread(post.tenant, post.thread_id)).title
                looked_up += 1
        return titles

    def _thread_tags(self, posts: Sequence[Post]) -> dict[tuple[str, str], tuple[str, ...]]:
        """Each thread's tags, from its root in the batch or remembered from an earlier one."""
        tags = {(p.tenant, p.thread_id): p.tags for p in posts if p.kind is PostKind.QUESTION}
        for post in posts:
            tags.setdefault((post.tenant, post.thread_id), self._history.tags(post.tenant, post.thread_id))
        return tags

    def _remember(self, upserts: Sequence[PostUpserted], contributions: dict[int, Contribution]) -> None:
        """Questions and accepted answers become the tenant's history to learn from."""
        for event in upserts:
            post, contribution = event.data, contributions[id(event)]
            if post.kind is PostKind.QUESTION:
                self._history.question(
                    past_question(contribution, tenant=post.tenant, vector=contribution.vector, audience=post.audience)
                )
            elif post.kind is PostKind.ANSWER and post.accepted:
                self._history.accepted(post.tenant, post.thread_id, post.author_id)

    async def _apply(
        self, events: Sequence[object], contributions: dict[int, Contribution], pause: Pause | None = None
    ) -> list[PostUpserted]:
        """Apply the batch to the index in order; returns the new questions still standing after it.

        With `pause`, upserts are written `embed_batch` at a time, awaiting `pause` between two writes:
        Edge holds the GIL while it writes (about 12,000 points/s here), so a live question need not
        wait for a whole import batch to be written.
        """
        questions: dict[tuple[str, str], PostUpserted] = {}
        run: list[Contribution] = []
        for event in events:
            if isinstance(event, PostUpserted):
                # Consecutive upserts go in one call; order only matters around deletes and erasures.
                run.append(contributions[id(event)])
                if event.data.kind is PostKind.QUESTION and not event.data.backfill:
                    questions[(event.tenant, event.data.id)] = event
                continue
            await self._flush(run, pause)
            if isinstance(event, PostDeleted):
                await self._index.delete_post(event.tenant, event.data.post_id)
                self._history.delete(event.tenant, event.data.post_id)
                questions.pop((event.tenant, event.data.post_id), None)
            elif isinstance(event, PersonErased):
                await self._index.erase_person(event.tenant, event.data.person_id)
                self._history.erase(event.tenant, event.data.person_id)
                self.trainer.forget(event.tenant)
                questions = {k: q for k, q in questions.items() if q.data.author_id != event.data.person_id}
        await self._flush(run, pause)
        return list(questions.values())

    async def _flush(self, run: list[Contribution], pause: Pause | None) -> None:
        if pause is None:
            if run:
                await self._index.upsert(list(run))
        else:
            for start in range(0, len(run), self._embed_batch):
                if start:
                    await pause()
                await self._index.upsert(run[start:start + self._embed_batch])
        run.clear()

    async def _traced_match(self, event: PostUpserted, contribution: Contribution) -> ExpertsMatched:
        """`_match` in a span of the question's trace and with its ids on every log line; the match
        continues the trace to the notifier."""
        post = event.data
        with log_context(tenant=event.tenant, thread_id=post.thread_id, post_id=post.id, event_id=event.id):
            with tracing.span("match question", event_id=event.id, **{"expertmatch.post_id": post.id}) as span:
                match = await self._match(event, contribution)
                span.set_attribute("expertmatch.candidates", len(match.data.candidates))
                tracing.remember(match.id)
        return match

    async def _match(self, event: PostUpserted, contribution: Contribution) -> ExpertsMatched:
        post = event.data
        ranked = await self.rank_question(
            tenant=post.tenant,
            vector=contribution.vector,
            text=contribution_text(post.title, plain_body(post)),
            tags=post.tags,
            asker=post.author_id,
            thread_id=post.thread_id,
            audience=post.audience,
            now=post.created_at,
            limit=self._policy.candidates,
        )
        _log_match(post, ranked)
        return ExpertsMatched(
            # The same upsert always yields the same match id: a replayed batch republishes, not duplicates.
            id=uuid.uuid5(_MATCH_NAMESPACE, f"{event.tenant}/{event.id}"),
            tenant=post.tenant,
            data=Match(
                question=question_of(post), candidates=tuple(ranked.candidates), participants=tuple(ranked.participants)
            ),
        )

    async def rank_question(
        self,
        *,
        tenant: str,
        vector: Sequence[float],
        asker: str,
        thread_id: str,
        audience: Sequence[str],
        now: datetime,
        limit: int,
        text: str = "",
        tags: Sequence[str] = (),
    ) -> RankedQuestion:
        """The people to invite to a question, and the thread's participants (never candidates).

        `now` is when the question was asked: every feature is read as of then, live and in replays.
        `text` (title and body) feeds the lexical search, `tags` the tag overlap.
        """
        await self.trainer.restore(tenant)
        thread = await self._index.thread(tenant, thread_id)
        participants = sorted({asker, *thread.participants})
        query = QuestionQuery(
            tenant=tenant,
            vector=vector,
            text=text,
            tags=tuple(tags),
            now=now,
            audiences=visible_to(audience),
            exclude_authors=tuple(participants),
            exclude_threads=(thread_id,),
        )
        candidates, pool = await self._rank(query, limit=limit)
        # The history grew since the last fit: refit in the background, never in the way of this answer.
        self.trainer.schedule(tenant)
        return RankedQuestion(candidates, participants, pool)

    async def _rank(self, query: QuestionQuery, *, limit: int) -> tuple[list[Candidate], frozenset[str]]:
        started = time.perf_counter()
        table = await candidate_features(self._index, query, pool=self._policy.pool, daily=self._daily)
        table = await with_feedback(self._index, query, table)
        ranked = rank_candidates(
            table,
            self.trainer.scorer(query.tenant),
            now=query.now,
            limit=limit + _SPARE,
            evidence=self._policy.evidence,
            order=self._policy.evidence_order,
        )
        ranked = await self._closest_posts(query, ranked)
        metrics.RANK_SECONDS.observe(time.perf_counter() - started)
        metrics.POOL_SIZE.observe(len(table.people))
        metrics.CANDIDATES.observe(min(limit, len(ranked)))
        return ranked[:limit], frozenset(table.people)

    async def _closest_posts(self, query: QuestionQuery, ranked: list[Candidate]) -> list[Candidate]:
        """Candidates with their closest answers measured; those with no post the asker may see dropped.

        A person found by the question's words alone, or among the people answering its tags
        most, has no answer among the nearest posts to measure their closeness by: their own
        nearest answers give it, as evidence and as `closeness` (which the notifier's floor reads).
        """
        unmeasured = [c.person_id for c in ranked if not c.closeness]
        if not unmeasured:
            return ranked
        nearest = await self._index.nearest_by_author(
            query.tenant, query.vector, unmeasured, limit=self._policy.evidence, audiences=query.audiences,
            exclude_threads=query.exclude_threads, before=query.before, kinds=(PostKind.ANSWER,),
        )
        found = []
        for candidate in ranked:
            hits = nearest.get(candidate.person_id)
            if hits:
                closest = [evidence_of(hit) for hit in hits]
                known = {e.post_id for e in closest}
                merged = (*closest, *(e for e in candidate.evidence if e.post_id not in known))
                candidate = candidate.model_copy(
                    update={"evidence": merged[: self._policy.evidence], "closeness": max(h.similarity for h in hits)}
                )
            if candidate.evidence:
                found.append(candidate)
        return found


def _log_match(post: Post, ranked: RankedQuestion) -> None:
    """The match decision, one line: who was considered, and the best few with their scores."""
    best = [{"person_id": c.person_id, "score": round(c.score, 4)} for c in ranked.candidates[:5]]
    log.info(
        "question %s matched: %d ranked of %d considered; best: %s",
        post.id, len(ranked.candidates), len(ranked.pool),
        ", ".join(f"{c['person_id']} {c['score']}" for c in best) or "nobody",
        extra={
            "event": "match", "tenant": post.tenant, "thread_id": post.thread_id, "post_id": post.id,
            "pool": len(ranked.pool), "ranked": len(ranked.candidates), "candidates": best,
        },
    )
