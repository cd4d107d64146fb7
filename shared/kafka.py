"""Producers, topic creation and publishing: the one aiokafka code path every service uses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence

import aiokafka.client
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.protocol.metadata import MetadataRequest

from shared import tracing
from shared.events import EVENT_HEADERS, AnyEvent, encode_event, event_key
from shared.health import Check, NotReady
from shared.settings import CommonSettings
from shared.topics import TopicSpec, load_topic_specs

log = logging.getLogger(__name__)

# How often clients re-read the broker's metadata: a topic re-created after a broker restart is
# seen within this, not after aiokafka's default of five minutes.
METADATA_MAX_AGE_MS = 5_000
# The fetch wait of lanes nobody waits on (imports, replies): aiokafka's default, fewer idle fetches.
BACKGROUND_FETCH_MAX_WAIT_MS = 500


class _MetadataWithoutTopicCreation(MetadataRequest):
    """A metadata request that never asks the broker to create the topics it names.

    aiokafka's producers and consumers ask with allow_auto_topic_creation=True, so a broker that
    allows it (the embedded one always does) creates a missing topic on first use with its own
    defaults: four partitions and no dead-letter topic after a restart. Topics are created only by
    their owner, from deploy/topics.json (`ensure_topics`).
    """

    def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None) -> None:
        super().__init__(topics, allow_auto_topic_creation=False)


# aiokafka builds its clients' metadata requests from this module attribute; the admin client,
# which only lists topics, has its own.
assert aiokafka.client.MetadataRequest in (MetadataRequest, _MetadataWithoutTopicCreation), "aiokafka changed"
aiokafka.client.MetadataRequest = _MetadataWithoutTopicCreation


def make_producer(settings: CommonSettings, **overrides) -> AIOKafkaProducer:
    """acks=all always; idempotence where the broker supports it (a setting)."""
    options = dict(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        # Sent at once: a live question does not wait for company. What piles up while a request
        # is in flight still goes out in one batch.
        linger_ms=0,
        max_request_size=4 * 1024 * 1024,
        request_timeout_ms=15_000,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(settings: CommonSettings, *topics: str, group_id: str, **overrides) -> AIOKafkaConsumer:
    """Manual commits: offsets move only after a batch is handled (at least once)."""
    options = dict(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        auto_offset_reset="earliest",
        max_poll_interval_ms=600_000,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.kafka_session_timeout_ms // 5),
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def ensure_topics(settings: CommonSettings, specs: Sequence[TopicSpec] | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    if specs is None:
        specs = load_topic_specs(settings.kafka_topics_file, prefix=settings.kafka_topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another replica created them first
                await admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            spec.partitions,
                            1,
                            topic_configs={"retention.ms": str(spec.retention_ms)},
                        )
                        for spec in missing
                    ]
                )
        return [spec.name for spec in missing]
    finally:
        await admin.close()


def event_headers(event: AnyEvent) -> list[tuple[str, bytes]]:
    """What a record says beside its event: the CloudEvents content type and the event's trace."""
    return [*EVENT_HEADERS, *tracing.headers(event.id)]


async def publish(producer: AIOKafkaProducer, topic: str, events: Iterable[AnyEvent]) -> int:
    """Send events and wait until the broker has every one (acks=all); returns how many."""
    futures = [
        await producer.send(topic, encode_event(event), key=event_key(event), headers=event_headers(event))
        for event in events
    ]
    if futures:
        await asyncio.gather(*futures)
    return len(futures)


def broker_check(settings: CommonSettings, *topics: str, timeout: float = 3.0) -> Check:
    """Readiness: the broker answers a metadata request and holds `topics` (full names)."""

    async def broker() -> bool:
        existing = await _list_topics(settings, timeout)
        if existing is None:
            raise NotReady(f"the broker at {settings.kafka_bootstrap_servers} does not answer")
        if missing := [topic for topic in topics if topic not in existing]:
            raise NotReady(f"missing on the broker: {', '.join(missing)}; topics are created by their owner "
                           f"(`expertmatch topics`, or the embedded supervisor)")
        return True

    return broker


async def _list_topics(settings: CommonSettings, timeout: float) -> set[str] | None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        return set(await asyncio.wait_for(admin.list_topics(), timeout))
    except (TimeoutError, KafkaError, OSError):
        return None
    finally:
        with contextlib.suppress(Exception):  # closing a client that never connected
            await admin.close()
