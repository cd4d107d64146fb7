"""What a producer sent, kept on disk until every consumer of its topic has committed past it.

Only where the broker keeps nothing: the embedded default (see shared/epoch.py). Every event is
written to a SQLite file (WAL, synchronous=FULL) before it is sent, and its partition and offset
once the broker has acknowledged it. A relay, every `interval` seconds:

- after the broker started over (the epoch changed), marks every row the old broker held as
  unsent, since the new one holds none of them;
- sends the rows that are unsent (the new epoch's resend, or a send that failed) in order;
- forgets the rows below the offset every consumer group of their topic has committed.

Consumers are idempotent (at least once), so a row sent twice costs a second handling, never a
second invitation. With Apache Kafka the log itself is durable: `open_publisher` returns a
`DirectPublisher` and no file is written.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from shared import tracing
from shared.epoch import read_epoch
from shared.events import EVENT_HEADERS, AnyEvent, encode_event, event_key
from shared.kafka import publish
from shared.settings import CommonSettings
from shared.topics import load_topic_specs

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    created REAL NOT NULL,
    -- Set once the broker of `epoch` acknowledged the row; NULL while it waits to be sent.
    epoch INTEGER,
    part INTEGER,
    offset INTEGER,
    attempted REAL NOT NULL DEFAULT 0,
    -- The event's W3C trace context (traceparent), sent with it again on a resend.
    trace TEXT
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (part, id);
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (topic, part, offset);
"""


# (topic, key, value, traceparent): one event as the outbox keeps it.
_Row = tuple[str, bytes | None, bytes, str | None]


def _headers(trace: str | None) -> list[tuple[str, bytes]]:
    return [*EVENT_HEADERS, *((("traceparent", trace.encode()),) if trace else ())]


class EventPublisher(Protocol):
    async def publish(self, topic: str, events: Iterable[AnyEvent]) -> int:
        """Return once the broker has every event (acks=all); raises KafkaError or TimeoutError."""


@dataclass
class DirectPublisher:
    """For a broker with a durable log: send, and wait for the acknowledgements."""

    producer: AIOKafkaProducer

    async def publish(self, topic: str, events: Iterable[AnyEvent]) -> int:
        return await publish(self.producer, topic, events)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    unsent: int
    held: int


class Outbox:
    """A producer's durable record of what it sent, resent after the broker starts over."""

    def __init__(
        self,
        path: Path,
        *,
        producer: AIOKafkaProducer,
        epoch_file: Path,
        consumers: Mapping[str, Sequence[str]],
        retention: Mapping[str, float],
        bootstrap_servers: str,
        interval: float = 1.0,
        resend_after: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._producer = producer
        self._epoch_file = epoch_file
        # topic -> the consumer groups that must be past a row before it is forgotten.
        self._consumers = {topic: tuple(groups) for topic, groups in consumers.items()}
        # topic -> seconds.
        self._retention = dict(retention)
        self._bootstrap_servers = bootstrap_servers
        self._interval = interval
        # A row still unsent this long after a send was tried is tried again by the relay
        # (the publish that wrote it gave up, or its process died before the acknowledgement).
        self._resend_after = resend_after
        self._clock = clock
        self._watchers: dict[str, AIOKafkaConsumer] = {}
        self._stopping = asyncio.Event()
        # One thread owns the connection: SQLite calls never block the event loop.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        if "trace" not in {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}:
            self._db.execute("ALTER TABLE outbox ADD COLUMN trace TEXT")  # a file from before traces

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, topic: str, events: Iterable[AnyEvent]) -> int:
        """Write the events down, send them, and note where the broker put them."""
        records = [(topic, event_key(event), encode_event(event), tracing.traceparent(event.id)) for event in events]
        if not records:
            return 0
        # Read before sending: a row is only ever credited to the broker that acknowledged it,
        # or to an older one (then it is sent again), never to a newer one.
        epoch = read_epoch(self._epoch_file) or 0
        ids = await self._call(self._insert, records)
        await self._send(ids, records, epoch)
        return len(records)

    async def _send(self, ids: Sequence[int], records: Sequence[_Row], epoch: int) -> None:
        futures = [
            await self._producer.send(topic, value, key=key, headers=_headers(trace))
            for topic, key, value, trace in records
        ]
        placed = await asyncio.gather(*futures)
        await self._call(
            self._mark_sent, [(epoch, meta.partition, meta.offset, id_) for id_, meta in zip(ids, placed, strict=True)]
        )

    def _insert(self, records: Sequence[_Row]) -> list[int]:
        now = self._clock()
        with self._transaction():
            return [
                self._db.execute(
                    "INSERT INTO outbox (topic, key, value, trace, created, attempted) VALUES (?, ?, ?, ?, ?, ?)",
                    (topic, key, value, trace, now, now),
                ).lastrowid
                for topic, key, value, trace in records
            ]

    def _mark_sent(self, rows: Sequence[tuple[int, int, int, int]]) -> None:
        with self._transaction():
            self._db.executemany("UPDATE outbox SET epoch = ?, part = ?, offset = ? WHERE id = ?", rows)

    # -- the relay --------------------------------------------------------------------------

    async def run(self) -> None:
        """Relay until `stop()`: resend what the broker lost, forget what every consumer has."""
        while not self._stopping.is_set():
            try:
                await self.relay_once()
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("outbox: the broker is not answering (%r); trying again", exc)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()

    async def relay_once(self) -> None:
        epoch = read_epoch(self._epoch_file)
        if epoch is None:  # the broker's owner has not created the topics yet
            return
        lost = await self._call(self._forget_placement, epoch)
        if lost:
            log.warning("outbox: the broker started over (epoch %d); resending %d events it lost", epoch, lost)
        await self._resend(epoch)
        await self._prune(epoch)

    def _forget_placement(self, epoch: int) -> int:
        with self._transaction():
            return self._db.execute(
                "UPDATE outbox SET epoch = NULL, part = NULL, offset = NULL, attempted = 0 "
                "WHERE part IS NOT NULL AND epoch != ?",
                (epoch,),
            ).rowcount

    async def _resend(self, epoch: int, chunk: int = 500) -> None:
        while True:
            rows = await self._call(self._due, chunk)
            if not rows:
                return
            ids = [row[0] for row in rows]
            await self._call(self._touch, ids)
            await self._send(ids, [row[1:] for row in rows], epoch)
            if len(rows) < chunk:
                return

    def _due(self, limit: int) -> list[tuple[int, str, bytes | None, bytes, str | None]]:
        cutoff = self._clock() - self._resend_after
        return self._db.execute(
            "SELECT id, topic, key, value, trace FROM outbox WHERE part IS NULL AND attempted <= ? ORDER BY id LIMIT ?",
            (cutoff, limit),
        ).fetchall()

    def _touch(self, ids: Sequence[int]) -> None:
        now = self._clock()
        with self._transaction():
            self._db.executemany("UPDATE outbox SET attempted = ? WHERE id = ?", [(now, id_) for id_ in ids])

    async def _prune(self, epoch: int) -> None:
        await self._call(self._expire)
        held = await self._call(self._held_partitions, epoch)
        for topic, part in held:
            groups = self._consumers.get(topic, ())
            if not groups:
                continue  # nobody consumes it here: kept, and forgotten only with its retention
            committed = [await self._committed(group, TopicPartition(topic, part)) for group in groups]
            below = min(committed)
            if below > 0:
                await self._call(self._forget, epoch, topic, part, below)

    def _expire(self) -> None:
        """Past its topic's retention a row is gone from any broker too: forget it."""
        now = self._clock()
        with self._transaction():
            for topic, retention in self._retention.items():
                self._db.execute("DELETE FROM outbox WHERE topic = ? AND created < ?", (topic, now - retention))

    def _held_partitions(self, epoch: int) -> list[tuple[str, int]]:
        return self._db.execute(
            "SELECT DISTINCT topic, part FROM outbox WHERE epoch = ? AND part IS NOT NULL", (epoch,)
        ).fetchall()

    def _forget(self, epoch: int, topic: str, part: int, below: int) -> None:
        with self._transaction():
            self._db.execute(
                "DELETE FROM outbox WHERE epoch = ? AND topic = ? AND part = ? AND offset < ?",
                (epoch, topic, part, below),
            )

    async def _committed(self, group: str, tp: TopicPartition) -> int:
        watcher = self._watchers.get(group)
        if watcher is None:
            # A member of no subscription: it reads the group's committed offsets, never joins it.
            watcher = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap_servers, group_id=group, enable_auto_commit=False
            )
            await watcher.start()
            self._watchers[group] = watcher
        return await watcher.committed(tp) or 0

    def _stats(self) -> OutboxStats:
        unsent, held = self._db.execute("SELECT COUNT(*) FILTER (WHERE part IS NULL), COUNT(*) FROM outbox").fetchone()
        return OutboxStats(unsent=unsent, held=held)

    async def stats(self) -> OutboxStats:
        return await self._call(self._stats)

    # -- plumbing ---------------------------------------------------------------------------

    def _transaction(self):
        return _Transaction(self._db)

    async def close(self) -> None:
        for watcher in self._watchers.values():
            await watcher.stop()
        self._watchers.clear()
        await self._call(self._db.close)
        self._thread.shutdown(wait=True)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


@asynccontextmanager
async def open_publisher(
    settings: CommonSettings, producer: AIOKafkaProducer, *, name: str
) -> AsyncIterator[EventPublisher]:
    """An outbox with its relay running where the broker keeps nothing; else a direct publisher."""
    if settings.kafka_epoch_file is None:
        yield DirectPublisher(producer)
        return
    specs = load_topic_specs(settings.kafka_topics_file, prefix=settings.kafka_topic_prefix)
    outbox = Outbox(
        settings.data_dir / f"outbox-{name}.sqlite3",
        producer=producer,
        epoch_file=settings.kafka_epoch_file,
        consumers={spec.name: spec.consumers for spec in specs},
        retention={spec.name: spec.retention_ms / 1000 for spec in specs},
        bootstrap_servers=settings.kafka_bootstrap_servers,
    )
    relay = asyncio.create_task(outbox.run(), name=f"{name}-outbox")
    try:
        yield outbox
    finally:
        outbox.stop()
        await relay
        await outbox.close()
