"""`python -m tests.bench.outbox`: what the outbox costs a producer, against sending straight to the broker.

The same events, in batches as ingest's batch API sends them, once through each publisher on one
embedded broker, so the figures compare as a ratio within the run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from services.embedded.broker import BrokerSupervisor
from shared.events import Post, PostKind, PostUpserted
from shared.kafka import make_producer
from shared.outbox import DirectPublisher, open_publisher
from shared.settings import CommonSettings
from shared.topics import BACKFILL, load_topic_specs


def _events(count: int, run: str) -> list[PostUpserted]:
    body = "A typical answer of a few sentences about consumer lag, partitions and rebalancing. " * 8
    return [
        PostUpserted(tenant="bench", data=Post(
            id=f"{run}-{n}", tenant="bench", thread_id=f"{run}-t{n % 500}", author_id=f"u{n % 97}",
            kind=PostKind.ANSWER, body=body, created_at=datetime(2026, 1, 1, tzinfo=UTC), backfill=True,
        ))
        for n in range(count)
    ]


async def _rate(publisher, topic: str, events: list[PostUpserted], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        await publisher.publish(topic, events[i:i + batch])
    return len(events) / (time.perf_counter() - started)


async def measure(settings: CommonSettings, count: int, batch: int) -> tuple[float, float]:
    producer = make_producer(settings)
    await producer.start()
    try:
        topic = settings.topic(BACKFILL)
        direct = await _rate(DirectPublisher(producer), topic, _events(count, "direct"), batch)
        async with open_publisher(settings, producer, name="bench") as outbox:
            durable = await _rate(outbox, topic, _events(count, "outbox"), batch)
    finally:
        await producer.stop()
    return direct, durable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="events per publish, as one batch API request")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"bench{uuid.uuid4().hex[:6]}-"
        epoch_file = Path(tmp) / "broker-epoch"
        with BrokerSupervisor(epoch_file=epoch_file, topics=load_topic_specs(prefix=prefix)) as broker:
            settings = CommonSettings(kafka_bootstrap_servers=broker.bootstrap_servers, kafka_topic_prefix=prefix,
                                      kafka_epoch_file=epoch_file, data_dir=Path(tmp))
            direct, durable = asyncio.run(measure(settings, args.events, args.batch))
    print(f"| publish {args.events} posts in batches of {args.batch} | events/s |")
    print("|---|---|")
    print(f"| straight to the broker | {direct:.0f} |")
    print(f"| through the outbox (SQLite WAL, synchronous=FULL) | {durable:.0f} |")
    print(f"| ratio outbox / straight | {durable / direct:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
