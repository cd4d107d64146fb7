"""The one consumer loop: micro-batches in, a handler, dead letters out, commit after.

Delivery is at least once: offsets are committed only after a batch has been handled or
dead-lettered, so a crash replays the batch and handlers must be idempotent.

Handlers get the batch's events, never Kafka's records. Errors a handler raises:
- `TransientError`, or an error the wiring's `transient` says is one (a domain's own, such as the
  matcher's `IndexUnavailable`): the batch is retried after a backoff, nothing is committed.
- `KafkaError` from the broker itself (fetch, commit, dead-letter send): treated the same way.
- any other exception: the batch is split and each event handled alone; an event that still
  fails goes to `<topic>.dlq` with the error in its headers, and the loop moves on.

Health (`health()`, shown on `/readyz`): a loop that has stopped, that has failed for longer than
a grace period, or that has held no partition for that long, says why. It recovers by itself:
aiokafka rejoins the group and re-reads metadata, and after the embedded broker starts over (a new
epoch, shared/epoch.py) the loop goes back to the start of the new log, which holds only what the
producers' outboxes resent and what came after.

The new broker can also hold offsets committed from before the loop saw its epoch: a batch in hand
while the broker died is committed to the new one at its old positions, which there point past
records nobody read. So after a restart the loop trusts no offset it has not committed itself: a
partition assigned to it (a rebalance restores committed offsets) starts at the new log's beginning
until the loop has committed it in the new epoch. A process that starts in an epoch trusts what it
finds, as after any restart of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from shared import metrics, tracing
from shared.epoch import read_epoch
from shared.events import AnyEvent, UndecodableEvent, decode_event
from shared.topics import dlq

log = logging.getLogger(__name__)


# How often the loop measures its lag (a position per partition) for `/metrics`.
_LAG_EVERY = 5.0


class TransientError(Exception):
    """A dependency is down (index, database, broker): retry the batch later, commit nothing."""


@dataclass(frozen=True, slots=True)
class _Received:
    """A decoded event with the record it came in: where it goes if it is dead-lettered."""

    event: AnyEvent
    record: ConsumerRecord


Handler = Callable[[Sequence[AnyEvent]], Awaitable[None]]


@dataclass
class LoopStats:
    handled: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    retries: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


class ConsumerLoop:
    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        handler: Handler,
        name: str,
        max_records: int = 64,
        poll_timeout_ms: int = 500,
        retry_backoff: Sequence[float] = (0.5, 1, 2, 5, 10, 30),
        on_caught_up: Callable[[], Awaitable[None]] | None = None,
        epoch_file: Path | None = None,
        gate: Callable[[], Awaitable[None]] | None = None,
        grace: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        transient: Callable[[BaseException], bool] = lambda exc: False,
    ) -> None:
        self._consumer = consumer
        # The wiring's one mapping of domain errors to "retry later" (else: split, then dead letter).
        self._transient = transient
        self._epoch_file = epoch_file
        # After the broker started over: the partitions this loop committed since, whose committed
        # offsets it trusts (None until then), and those assigned to it that must start over.
        self._committed_since_restart: set[TopicPartition] | None = None
        self._start_over: set[TopicPartition] = set()
        if epoch_file is not None:
            # Best before the consumer starts: on a started one, subscribing again makes it rejoin.
            consumer.subscribe(topics=sorted(consumer.subscription()), listener=_Assigned(self._assigned))
        # Awaited before each poll: another loop's priority (the matcher's live lane over backfill).
        self._gate = gate
        self._epoch: int | None = read_epoch(epoch_file) if epoch_file else None
        # How long a failure or an empty assignment may last before `health()` reports it.
        self._grace = grace
        self._clock = clock
        self._failing_since: float | None = None
        self._last_error = ""
        self._unassigned_since: float | None = clock()
        self._lag_measured = float("-inf")
        # Called after a poll that brings nothing: the loop has caught up with its topics.
        self._on_caught_up = on_caught_up
        self._producer = producer
        self._handler = handler
        self._name = name
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._retry_backoff = tuple(retry_backoff)
        self._stopping = asyncio.Event()
        self._running = False
        self.stats = LoopStats()

    @property
    def name(self) -> str:
        return self._name

    @property
    def running(self) -> bool:
        """True while `run` is looping: readiness reports a consumer that died."""
        return self._running

    def health(self) -> str | None:
        """None while the loop can do its work; else what is wrong, in words."""
        if not self._running:
            return "stopped"
        now = self._clock()
        self._note_assignment(now)
        if self._failing_since is not None and now - self._failing_since > self._grace:
            return f"failing for {now - self._failing_since:.0f}s: {self._last_error}"
        if self._unassigned_since is not None and now - self._unassigned_since > self._grace:
            topics = ", ".join(sorted(self._consumer.subscription())) or "its topics"
            return f"no partition of {topics} assigned for {now - self._unassigned_since:.0f}s"
        return None

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and return from `run`."""
        self._stopping.set()

    async def run(self) -> None:
        attempt = 0
        self._running = True
        try:
            while not self._stopping.is_set():
                attempt = await self._run_guarded(attempt)
        finally:
            self._running = False

    async def _run_guarded(self, attempt: int) -> int:
        """One batch; on a transient failure, wait out the backoff. Returns the next attempt number."""
        try:
            await self.run_once()
            self._failing_since = None
            return 0
        except Exception as exc:
            if not self._is_transient(exc):
                raise
            delay = self._retry_backoff[min(attempt, len(self._retry_backoff) - 1)]
            self.stats.retries += 1
            metrics.RETRIES.labels(self._name).inc()
            if self._failing_since is None:
                self._failing_since = self._clock()
            self._last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("%s: transient failure, retrying in %.1fs: %r", self._name, delay, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            return attempt + 1

    async def drain(self, idle_polls: int = 2) -> int:
        """Burst mode for tests and tools: handle until `idle_polls` polls in a row bring nothing."""
        total, idle = 0, 0
        while idle < idle_polls:
            count = await self.run_once()
            total += count
            idle = 0 if count else idle + 1
        return total

    async def run_once(self) -> int:
        """Poll one batch, handle it, commit it; returns how many records it held."""
        if self._gate is not None and not await self._through_gate():
            return 0
        await self._follow_epoch()
        batches = await self._consumer.getmany(
            timeout_ms=self._poll_timeout_ms, max_records=self._max_records
        )
        if self._start_over:
            # The group rebalanced during the poll: what it brought from restored offsets is read
            # again once those partitions are back at the start.
            self._rewind(batches)
            return 0
        records = [record for part in batches.values() for record in part]
        now = self._clock()
        self._note_assignment(now)
        await self._measure_lag(now)
        if not records:
            if self._on_caught_up is not None:
                await self._on_caught_up()
            return 0
        started = time.perf_counter()
        try:
            await self._handle(records)
        except Exception:
            self._rewind(batches)  # nothing committed: the batch is read again
            raise
        await self._consumer.commit()
        metrics.HANDLE_SECONDS.labels(self._name).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(self._name).observe(len(records))
        if self._committed_since_restart is not None:
            self._committed_since_restart.update(tp for tp, part in batches.items() if part)
        self.stats.batches += 1
        return len(records)

    async def _handle(self, records: list[ConsumerRecord]) -> None:
        deliveries: list[_Received] = []
        for record in records:
            try:
                event = decode_event(record.value or b"")
            except UndecodableEvent as exc:
                await self._dead_letter(record, exc)
                continue
            if event is None:
                self.stats.skipped += 1
                self._count("skipped", [record])
                continue
            tracing.received(event.id, record.headers)
            deliveries.append(_Received(event, record))
        if not deliveries:
            return
        events = [delivery.event for delivery in deliveries]
        try:
            with tracing.batch_span(f"handle {self._name}", [event.id for event in events]):
                await self._handler(events)
        except Exception as exc:
            if self._is_transient(exc):
                raise
            if len(deliveries) == 1:
                await self._dead_letter(deliveries[0].record, exc)
                return
            log.warning("%s: batch of %d failed, handling one by one", self._name, len(deliveries))
            for delivery in deliveries:
                try:
                    await self._handler([delivery.event])
                except Exception as exc:
                    if self._is_transient(exc):
                        raise
                    await self._dead_letter(delivery.record, exc)
                    continue
                self.stats.handled += 1
                self._count("handled", [delivery.record])
            return
        self.stats.handled += len(deliveries)
        self._count("handled", [delivery.record for delivery in deliveries])

    async def _dead_letter(self, record: ConsumerRecord, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        log.error("%s: dead-lettering %s[%d]@%d: %s", self._name, record.topic, record.partition, record.offset, reason)
        headers = list(record.headers or ()) + [
            ("error", reason.encode()),
            ("error.type", type(exc).__name__.encode()),
            ("error.trace", "".join(traceback.format_exception(exc))[-4000:].encode()),
            ("original.topic", record.topic.encode()),
            ("original.partition", str(record.partition).encode()),
            ("original.offset", str(record.offset).encode()),
            ("consumer", self._name.encode()),
        ]
        await self._producer.send_and_wait(dlq(record.topic), record.value, key=record.key, headers=headers)
        self.stats.dead_lettered += 1
        self.stats.errors.append(reason)
        self._count("dead_lettered", [record])
        metrics.DEAD_LETTERS.labels(record.topic).inc()

    async def _through_gate(self) -> bool:
        """False when `stop()` came first."""
        gate = asyncio.ensure_future(self._gate())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({gate, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (gate, stopping):
            waiter.cancel()
        return not self._stopping.is_set()

    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, (TransientError, KafkaError)) or self._transient(exc)

    def _count(self, outcome: str, records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            metrics.CONSUMED.labels(self._name, record.topic, outcome).inc()

    async def _measure_lag(self, now: float) -> None:
        """Every few seconds: how far each assigned partition's end is ahead of the loop."""
        if now - self._lag_measured < _LAG_EVERY:
            return
        self._lag_measured = now
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is None:  # nothing fetched from it yet
                continue
            try:
                position = await asyncio.wait_for(self._consumer.position(tp), 0.1)
            except (TimeoutError, KafkaError):
                continue  # being reset (a seek, a rebalance): measured next time
            metrics.LAG.labels(self._name, tp.topic, str(tp.partition)).set(max(0, end - position))

    def _note_assignment(self, now: float) -> None:
        if self._consumer.assignment():
            self._unassigned_since = None
        elif self._unassigned_since is None:
            self._unassigned_since = now

    async def _follow_epoch(self) -> None:
        """After the broker started over, read its new log from the start (see shared/epoch.py).

        Also what a rebalance since assigned that the loop must not read from its committed offset.
        """
        if self._epoch_file is None:
            return
        epoch = read_epoch(self._epoch_file)
        if epoch is not None and epoch != self._epoch:
            if self._epoch is not None:
                log.warning("%s: the broker started over (epoch %d -> %d); reading its topics from the start",
                            self._name, self._epoch, epoch)
                self._committed_since_restart = set()
                self._start_over = set(self._consumer.assignment())
            self._epoch = epoch
        if self._start_over:
            # Cleared first: a rebalance while seeking adds what it assigns again.
            partitions, self._start_over = self._start_over, set()
            assigned = partitions & self._consumer.assignment()
            if assigned:
                try:
                    await self._consumer.seek_to_beginning(*assigned)
                except BaseException:
                    self._start_over |= assigned  # tried again before the next poll
                    raise

    def _assigned(self, assigned: set[TopicPartition]) -> None:
        """A rebalance restored committed offsets: after a restart, only the loop's own are trusted."""
        if self._committed_since_restart is not None:
            self._start_over |= assigned - self._committed_since_restart

    def _rewind(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        assigned = self._consumer.assignment()
        for tp, part in batches.items():
            if part and tp in assigned:  # a partition the group took away is read from its commit
                self._consumer.seek(tp, part[0].offset)


class _Assigned(ConsumerRebalanceListener):
    """Tells the loop which partitions a rebalance gave it; the loop acts on it before its next poll."""

    def __init__(self, on_assigned: Callable[[set[TopicPartition]], None]) -> None:
        self._on_assigned = on_assigned

    def on_partitions_revoked(self, revoked) -> None:
        pass

    def on_partitions_assigned(self, assigned) -> None:
        self._on_assigned(set(assigned))

