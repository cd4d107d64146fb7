"""Wiring from the posts topics and responses to the matcher's handler; the loop lives in shared/consumer.py.

Two lanes, each its own consumer group: live posts (and responses) on `posts`, imports on
`posts.backfill`. The backfill lane polls only while the live lane is idle, and one batch at a
time is handled. A backfill batch lets a live batch that is waiting go first between two of its
embedding calls or index writes, so a live question waits for at most one such step
(`MATCHER_EMBED_BATCH_SIZE` texts), however large the backfill batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer

from services.matcher.index.base import IndexUnavailable
from services.matcher.service import Pause
from services.matcher.settings import MatcherSettings
from shared.consumer import ConsumerLoop
from shared.events import AnyEvent
from shared.kafka import BACKGROUND_FETCH_MAX_WAIT_MS, make_consumer
from shared.topics import BACKFILL, POSTS, RESPONSES

GROUP = "matcher"
BACKFILL_GROUP = "matcher-backfill"
# aiokafka's default is 1 MiB, about 400 of the dumps' posts as events: a batch would stop there.
BACKFILL_FETCH_BYTES = 16 * 1024 * 1024


class LaneHandler(Protocol):
    """The matcher's handler: `pause` is awaited between two embedding calls of a batch."""

    async def __call__(self, events: Sequence[AnyEvent], *, pause: Pause | None = None) -> None: ...


class Lanes:
    """Live before backfill: the turn to handle a batch, and whether each lane has caught up."""

    def __init__(
        self, handler: LaneHandler, on_caught_up: Callable[[], Awaitable[None]] | None, *, max_wait: float = 10.0
    ) -> None:
        self._handler = handler
        self._on_caught_up = on_caught_up
        self._live_idle = asyncio.Event()
        self._backfill_idle = False
        self._turn = asyncio.Lock()
        self._live_waiting = 0
        # A backfill batch waits at most this for the live lane, so that a steady live stream
        # slows an import without stopping it (nor getting its consumer dropped from the group).
        self._max_wait = max_wait

    async def live(self, events: Sequence[AnyEvent]) -> None:
        self._live_idle.clear()
        self._live_waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self._live_waiting -= 1
        try:
            await self._handler(events)
        finally:
            self._turn.release()

    async def backfill(self, events: Sequence[AnyEvent]) -> None:
        self._backfill_idle = False
        async with self._turn:
            await self._handler(events, pause=self._let_live_in)

    async def _let_live_in(self) -> None:
        """Between two embedding calls of a backfill batch: a live batch waiting for the turn takes it first."""
        if self._live_waiting:
            # asyncio's lock is fair: acquiring again queues behind the live batch just woken.
            self._turn.release()
            await self._turn.acquire()

    async def backfill_gate(self) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._live_idle.wait(), self._max_wait)

    async def live_caught_up(self) -> None:
        self._live_idle.set()
        if self._backfill_idle:
            await self._caught_up()

    async def backfill_caught_up(self) -> None:
        self._backfill_idle = True
        if self._live_idle.is_set():
            await self._caught_up()

    async def _caught_up(self) -> None:
        if self._on_caught_up is not None:
            await self._on_caught_up()


@dataclass(frozen=True)
class MatcherLoops:
    live: ConsumerLoop
    backfill: ConsumerLoop

    def __iter__(self):
        return iter((self.live, self.backfill))


def index_unavailable(exc: BaseException) -> bool:
    """The matcher's errors that mean "retry the batch later": the index is away (the broker's are already)."""
    return isinstance(exc, IndexUnavailable)


@asynccontextmanager
async def posts_consumers(
    settings: MatcherSettings,
    *,
    producer: AIOKafkaProducer,
    handler: LaneHandler,
    on_caught_up: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[MatcherLoops]:
    """Started consumers for both lanes, as loops; closed on exit.

    Posts keep the index in step; responses to invitations (`invitation.responded`) move the
    ranking of the next questions close to theirs. `on_caught_up` runs once both lanes are idle.
    """
    lanes = Lanes(handler, on_caught_up)
    async with AsyncExitStack() as stack:
        live = make_consumer(settings, settings.topic(POSTS), settings.topic(RESPONSES), group_id=settings.topic(GROUP))
        backfill = make_consumer(
            settings, settings.topic(BACKFILL), group_id=settings.topic(BACKFILL_GROUP),
            fetch_max_wait_ms=BACKGROUND_FETCH_MAX_WAIT_MS,
            # A poll returns at most one fetch of a partition: room for a whole batch of long posts.
            max_partition_fetch_bytes=BACKFILL_FETCH_BYTES,
        )
        common = dict(producer=producer, epoch_file=settings.kafka_epoch_file, transient=index_unavailable)
        # Loops first: each subscribes its consumer with its listener before the consumer starts.
        loops = MatcherLoops(
            live=ConsumerLoop(
                consumer=live, handler=lanes.live, name="matcher", max_records=settings.batch_size,
                on_caught_up=lanes.live_caught_up, **common,
            ),
            backfill=ConsumerLoop(
                consumer=backfill, handler=lanes.backfill, name="matcher-backfill",
                max_records=settings.backfill_batch_size, on_caught_up=lanes.backfill_caught_up,
                gate=lanes.backfill_gate, **common,
            ),
        )
        for consumer in (live, backfill):
            await consumer.start()
            stack.push_async_callback(consumer.stop)
        yield loops
