"""Dead letters: what a topic's `.dlq` holds, one in full, and sending them back to the topic (redrive).

The consumer loop (shared/consumer.py) writes each message it can never handle to `<topic>.dlq`:
the original key and value, the original headers, then `error`, `error.type`, `error.trace`,
`original.topic`, `original.partition`, `original.offset` and `consumer`.

A redrive sends dead letters back to their original topic with their key and original headers,
then commits the offset past the last one it sent for the consumer group `expertmatch-dlq-redrive`
(under KAFKA_TOPIC_PREFIX) on the dead-letter topic. That offset is the redrive mark: every dead
letter below it has been redriven, or passed over by a redrive of chosen offsets, and no redrive
sends it again. The group never joins: it only holds the mark. A redrive that dies between its
sends and its commit sends those again next time (consumers are idempotent).

A dead letter is addressed by its offset on the dead-letter topic (`5`), or `PARTITION:OFFSET`
on a partition other than 0 (deploy/topics.json gives every `.dlq` one partition).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.operations.broker import CommandFailed, end_offsets, partitions, reader
from services.operations.text import table
from shared.events import UndecodableEvent, decode_event
from shared.kafka import make_producer
from shared.settings import CommonSettings
from shared.topics import DLQ_SUFFIX, dlq

REDRIVE_GROUP = "expertmatch-dlq-redrive"
# What the consumer loop adds to a message it dead-letters; a redrive sends the message without them.
DEAD_LETTER_HEADERS = frozenset(
    {"error", "error.type", "error.trace", "original.topic", "original.partition", "original.offset", "consumer"}
)

Marks = dict[TopicPartition, int]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str  # the dead-letter topic, prefix included
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def address(self) -> str:
        return _address(self.partition, self.offset)

    def header(self, name: str, default: str = "") -> str:
        return next((value.decode(errors="replace") for key, value in self.headers if key == name), default)

    @property
    def back_to(self) -> str:
        """The topic it came from, where a redrive sends it."""
        return self.header("original.topic") or self.topic.removesuffix(DLQ_SUFFIX)

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(key, value) for key, value in self.headers if key not in DEAD_LETTER_HEADERS]

    @property
    def event(self) -> str:
        """`type id` of the event it carries, or `-` when it is none this version decodes."""
        try:
            event = decode_event(self.value or b"")
        except UndecodableEvent:
            return "-"
        return "-" if event is None else f"{event.type} {event.id}"

    def summary(self) -> list[str]:
        """offset, original partition@offset, consumer, event, and the error's type and first line."""
        origin = f"{self.header('original.partition', '?')}@{self.header('original.offset', '?')}"
        error = (self.header("error").splitlines() or ["-"])[0]
        return [self.address, origin, self.header("consumer", "-"), self.event, error]

    def lines(self) -> list[str]:
        """Everything about it: where, when, the key, every header (the trace indented) and the value."""
        when = datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).isoformat(timespec="seconds")
        lines = [f"{self.topic} {self.address}, dead-lettered {when}",
                 f"key: {_text(self.key)}"]
        for key, value in self.headers:
            text = value.decode(errors="replace")
            if "\n" in text.strip():
                lines += [f"{key}:", *(f"  {line}" for line in text.rstrip().splitlines())]
            else:
                lines.append(f"{key}: {text}")
        return [*lines, "value:", *_pretty(self.value).splitlines()]


@dataclass(frozen=True, slots=True)
class Listing:
    topic: str
    letters: list[DeadLetter]
    marks: dict[int, int]  # the redrive mark of each partition

    def lines(self) -> list[str]:
        count = f"{len(self.letters)} dead letter{'' if len(self.letters) == 1 else 's'}"
        heading = f"{self.topic}: {count}; {_marks_text(self.marks)}"
        if not self.letters:
            return [heading]
        rows = [["offset", "from", "consumer", "event", "error"], *(letter.summary() for letter in self.letters)]
        return [heading, *table(rows)]


@dataclass(frozen=True, slots=True)
class Redrive:
    topic: str
    sent: list[DeadLetter]
    passed_over: list[DeadLetter]
    marks: dict[int, int]

    def lines(self) -> list[str]:
        lines = [f"sent {letter.address} back to {letter.back_to} (key {_text(letter.key)})" for letter in self.sent]
        lines += [f"passed over {letter.address}: not chosen, it stays on {self.topic}" for letter in self.passed_over]
        return [*lines, f"{self.topic}: redrove {len(self.sent)}; {_marks_text(self.marks)}"]


def dlq_topic(settings: CommonSettings, topic: str) -> str:
    """`posts` or `posts.dlq` -> the dead-letter topic on the broker, under the prefix."""
    return settings.topic(dlq(topic.removesuffix(DLQ_SUFFIX)))


def parse_address(text: str) -> tuple[int, int]:
    """`5` -> (0, 5); `1:5` -> (1, 5)."""
    partition, _, offset = text.rpartition(":")
    if not offset.isdigit() or not (partition or "0").isdigit():
        raise CommandFailed(f"{text!r} is not a dead letter's offset (N, or PARTITION:N)")
    return int(partition or 0), int(offset)


async def list_dead_letters(settings: CommonSettings, topic: str) -> Listing:
    """Every dead letter the topic's `.dlq` holds, and where the redrive mark stands."""
    name = dlq_topic(settings, topic)
    async with reader(settings, group_id=settings.topic(REDRIVE_GROUP)) as consumer:
        tps = await partitions(consumer, name, settings.kafka_bootstrap_servers)
        letters = await _read(consumer, await _ranges(consumer, tps))
        marks = await _marks(consumer, tps)
    return Listing(name, letters, _by_partition(marks))


async def show_dead_letter(settings: CommonSettings, topic: str, address: str) -> DeadLetter:
    name = dlq_topic(settings, topic)
    partition, offset = parse_address(address)
    async with reader(settings) as consumer:
        tp = TopicPartition(name, partition)
        if tp not in await partitions(consumer, name, settings.kafka_bootstrap_servers):
            raise CommandFailed(f"{name} has no partition {partition}")
        begin, end = (await _ranges(consumer, [tp]))[tp]
        letters = await _read(consumer, {tp: (offset, offset + 1)}) if begin <= offset < end else []
    if not letters:
        held = "nothing" if begin >= end else f"{_address(partition, begin)} to {_address(partition, end - 1)}"
        raise CommandFailed(f"no dead letter at {address} on {name}: it holds {held}")
    return letters[0]


async def redrive(settings: CommonSettings, topic: str, addresses: Sequence[str] = ()) -> Redrive:
    """Send the dead letters from the redrive mark on (all, or those at `addresses`) back, then move the mark."""
    name = dlq_topic(settings, topic)
    chosen = {parse_address(address) for address in addresses}
    async with reader(settings, group_id=settings.topic(REDRIVE_GROUP)) as consumer:
        tps = await partitions(consumer, name, settings.kafka_bootstrap_servers)
        marks = await _marks(consumer, tps)
        ends = {tp: end for tp, (_, end) in (await _ranges(consumer, tps)).items()}
        letters = await _read(consumer, {tp: (marks[tp], ends[tp]) for tp in tps})
        to_send, after = _plan(name, letters, chosen, marks, ends)
        await _send_back(settings, to_send)
        if after != marks:
            await consumer.commit(after)
    sent = {(letter.partition, letter.offset) for letter in to_send}
    passed_over = [letter for letter in letters if (letter.partition, letter.offset) not in sent
                   and letter.offset < after[TopicPartition(name, letter.partition)]]
    return Redrive(name, to_send, passed_over, _by_partition(after))


def _plan(name: str, letters: list[DeadLetter], chosen: set[tuple[int, int]], marks: Marks,
          ends: Marks) -> tuple[list[DeadLetter], Marks]:
    """What to send, and the marks after it: past everything read, or past the last chosen letter.

    A chosen offset that cannot be sent refuses the whole redrive before anything is sent.
    """
    if not chosen:
        return letters, dict(ends)
    held = {(letter.partition, letter.offset) for letter in letters}
    for partition, offset in sorted(chosen - held):
        mark = marks.get(TopicPartition(name, partition), 0)
        if offset < mark:
            raise CommandFailed(f"{_address(partition, offset)} on {name} is below the redrive mark ({mark}): "
                                f"already redriven or passed over; nothing was sent")
        raise CommandFailed(f"no dead letter at {_address(partition, offset)} on {name}; nothing was sent")
    to_send = [letter for letter in letters if (letter.partition, letter.offset) in chosen]
    after = dict(marks)
    for letter in to_send:
        tp = TopicPartition(name, letter.partition)
        after[tp] = max(after[tp], letter.offset + 1)
    return to_send, after


async def _send_back(settings: CommonSettings, letters: list[DeadLetter]) -> None:
    """Each to its original topic, with its key and original headers; returns once the broker has them all."""
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [
            await producer.send(letter.back_to, letter.value, key=letter.key, headers=letter.original_headers)
            for letter in letters
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _marks(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> Marks:
    """The redrive group's committed offset of each partition; the log's start where it has none."""
    begins = await consumer.beginning_offsets(tps)
    return {tp: max(await consumer.committed(tp) or 0, begins[tp]) for tp in tps}


async def _ranges(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, tuple[int, int]]:
    begins = await consumer.beginning_offsets(tps)
    ends = await end_offsets(consumer, tps)
    return {tp: (begins[tp], ends[tp]) for tp in tps}


async def _read(consumer: AIOKafkaConsumer, ranges: dict[TopicPartition, tuple[int, int]]) -> list[DeadLetter]:
    """Each partition's records from its start up to (not including) its end: never waits for more."""
    pending = {tp: end for tp, (start, end) in ranges.items() if start < end}
    consumer.assign(list(ranges))
    for tp in pending:
        consumer.seek(tp, ranges[tp][0])
    letters: list[DeadLetter] = []
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=500)
        for tp, records in batches.items():
            letters += [_letter(record) for record in records if record.offset < pending[tp]]
        for tp in list(pending):
            if await consumer.position(tp) >= pending[tp]:
                del pending[tp]
    return sorted(letters, key=lambda letter: (letter.partition, letter.offset))


def _letter(record) -> DeadLetter:
    return DeadLetter(
        topic=record.topic, partition=record.partition, offset=record.offset, timestamp_ms=record.timestamp,
        key=record.key, value=record.value, headers=tuple(record.headers or ()),
    )


def _address(partition: int, offset: int) -> str:
    return str(offset) if partition == 0 else f"{partition}:{offset}"


def _by_partition(marks: Marks) -> dict[int, int]:
    return {tp.partition: mark for tp, mark in marks.items()}


def _marks_text(marks: dict[int, int]) -> str:
    if len(marks) == 1:
        return f"redrive mark {next(iter(marks.values()))}"
    return "redrive marks " + ", ".join(f"{partition}:{mark}" for partition, mark in sorted(marks.items()))


def _text(raw: bytes | None) -> str:
    return "(none)" if raw is None else raw.decode(errors="replace")


def _pretty(raw: bytes | None) -> str:
    """JSON indented, anything else as text."""
    if raw is None:
        return "(none)"
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw.decode(errors="replace")
