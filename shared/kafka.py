"""Producers, topic creation and publishing: the one aiokafka code path every service uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.events import AnyEvent, encode_event, event_key
from shared.settings import CommonSettings
from shared.topics import TopicSpec, load_topic_specs

log = logging.getLogger(__name__)


def make_producer(settings: CommonSettings, **overrides) -> AIOKafkaProducer:
    """acks=all always; idempotence where the broker supports it (a setting)."""
    options = dict(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        linger_ms=5,
        max_request_size=4 * 1024 * 1024,
        request_timeout_ms=15_000,
    )
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(settings: CommonSettings, *topics: str, group_id: str, **overrides) -> AIOKafkaConsumer:
    """Manual commits: offsets move only after a batch is handled (at least once)."""
    options = dict(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=600_000,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.kafka_session_timeout_ms // 5),
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
            try:
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
            except TopicAlreadyExistsError:
                pass  # another replica created them first
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def publish(producer: AIOKafkaProducer, topic: str, events: Iterable[AnyEvent]) -> int:
    """Send events and wait until the broker has every one (acks=all); returns how many."""
    futures = [
        await producer.send(topic, encode_event(event), key=event_key(event)) for event in events
    ]
    if futures:
        await asyncio.gather(*futures)
    return len(futures)


async def broker_answers(settings: CommonSettings, timeout: float = 3.0) -> bool:
    """Readiness: the broker answers a metadata request."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
        return True
    except (KafkaError, OSError, asyncio.TimeoutError):
        return False
    finally:
        try:
            await admin.close()
        except Exception:  # closing a client that never connected
            pass
