"""The matcher's composition root: builds the model, index, producer, service and consumer loop."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from services.matcher.consumer import MatcherLoops, posts_consumers
from services.matcher.embedder import Embedder, build_embedder
from services.matcher.index.base import ExpertIndex
from services.matcher.ranking import EvidenceOrder
from services.matcher.service import MatcherService, RankingPolicy
from services.matcher.settings import MatcherSettings
from services.matcher.training import TrainingPolicy
from shared.events import ExpertsMatched
from shared.health import Check, consumer_check
from shared.kafka import broker_check, make_producer
from shared.outbox import EventPublisher, open_publisher
from shared.topics import BACKFILL, MATCHES, POSTS, RESPONSES


@dataclass
class Matcher:
    """Everything a running matcher holds; `loops` is None when it does not consume."""

    service: MatcherService
    index: ExpertIndex
    embedder: Embedder
    loops: MatcherLoops | None
    tenants_by_key: Mapping[str, str]
    readiness: dict[str, Check] = field(default_factory=dict)


async def open_configured_index(settings: MatcherSettings) -> ExpertIndex:
    """The index the settings name: a Qdrant server at QDRANT_URL, else Qdrant Edge under data_dir."""
    # Imported here: the adapters pull in their Qdrant packages only when one is opened.
    from services.matcher.index import open_index

    opened = open_index(qdrant_url=settings.qdrant_url, edge_path=settings.edge_path, collection=settings.collection)
    return await opened if inspect.isawaitable(opened) else opened


@asynccontextmanager
async def bootstrap(
    settings: MatcherSettings,
    *,
    embedder: Embedder | None = None,
    index: ExpertIndex | None = None,
) -> AsyncIterator[Matcher]:
    """A running matcher; on exit everything closes in reverse order of opening."""
    async with AsyncExitStack() as stack:
        if embedder is None:
            model = build_embedder(
                settings.embedder, batch_size=settings.embed_batch_size, model_dir=settings.model_path,
                max_seq_length=settings.embed_max_seq_length,
            )
            model.start()  # loads in its thread while the rest starts
            stack.callback(model.close)
            embedder = model
        if index is None:
            index = await open_configured_index(settings)
            stack.push_async_callback(index.close)
        producer = make_producer(settings)
        await producer.start()
        stack.push_async_callback(producer.stop)
        events = await stack.enter_async_context(open_publisher(settings, producer, name="matcher"))
        service = MatcherService(
            index=index,
            embedder=embedder,
            publish=_publisher(events, settings.topic(MATCHES)),
            policy=_policy(settings),
            embed_batch=settings.embed_batch_size,
        )
        stack.push_async_callback(service.trainer.close)
        loops = None
        readiness = _readiness(settings, index, embedder)
        if settings.consume:
            loops = await stack.enter_async_context(
                posts_consumers(settings, producer=producer, handler=service.handle, on_caught_up=service.caught_up)
            )
            readiness["consumer"] = consumer_check(loops.live)
            readiness["backfill_consumer"] = consumer_check(loops.backfill)
        yield Matcher(
            service=service, index=index, embedder=embedder, loops=loops,
            tenants_by_key=settings.tenants_by_key, readiness=readiness,
        )


def _policy(settings: MatcherSettings) -> RankingPolicy:
    return RankingPolicy(
        candidates=settings.candidates,
        search_depth=settings.search_depth,
        lexical_depth=settings.lexical_depth,
        tag_depth=settings.tag_depth,
        recent_depth=settings.recent_depth,
        evidence=settings.evidence,
        evidence_order=EvidenceOrder(half_life_days=settings.recency_half_life_days),
        training=TrainingPolicy(
            min_examples=settings.learn_min_examples,
            retrain_every=settings.learn_every,
            window=settings.learn_window,
            history=settings.learn_history,
        ),
    )


def _publisher(events: EventPublisher, topic: str):
    async def publish_matches(matches: Sequence[ExpertsMatched]) -> None:
        # A KafkaError is retried by the consumer loop: the index already holds the batch, and
        # replaying it upserts the same points again.
        await events.publish(topic, matches)

    return publish_matches


def _readiness(settings: MatcherSettings, index: ExpertIndex, embedder: Embedder) -> dict[str, Check]:
    topics = [settings.topic(name) for name in (POSTS, BACKFILL, RESPONSES, MATCHES)]

    async def model() -> bool:
        # An injected embedder without a load step is ready as soon as it is handed in.
        return bool(getattr(embedder, "loaded", True))

    return {"broker": broker_check(settings, *topics), "index": index.ready, "model": model}
