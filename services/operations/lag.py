"""Consumer lag: how far each consumer group of deploy/topics.json is behind the end of its topics.

Each group's committed offsets are read by a consumer of that group that never joins it, so asking
never rebalances the group's members (the admin client's listing of all a group's offsets gets an
answer from the embedded broker that does not decode). A partition the group has never committed
counts from the log's start, where the group would begin reading it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from services.operations.broker import end_offsets, partitions, reader
from services.operations.text import table
from shared.settings import CommonSettings
from shared.topics import load_topic_specs


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass(frozen=True, slots=True)
class Lag:
    partitions: list[PartitionLag]

    def total(self, group: str) -> int:
        return sum(row.lag for row in self.partitions if row.group == group)

    def lines(self) -> list[str]:
        """A row per group, topic and partition, then the group's total."""
        rows = [["group", "topic", "partition", "committed", "end", "lag"]]
        groups = list(dict.fromkeys(row.group for row in self.partitions))
        for group in groups:
            rows += [[row.group, row.topic, str(row.partition), "-" if row.committed is None else str(row.committed),
                      str(row.end), str(row.lag)] for row in self.partitions if row.group == group]
            rows.append([group, "total", "", "", "", str(self.total(group))])
        return table(rows, right={2, 3, 4, 5})


def groups_and_topics(settings: CommonSettings) -> dict[str, list[str]]:
    """Each consumer group deploy/topics.json names, with the topics it reads (prefix included)."""
    topics: dict[str, list[str]] = defaultdict(list)
    for spec in load_topic_specs(settings.kafka_topics_file, prefix=settings.kafka_topic_prefix):
        for group in spec.consumers:
            topics[group].append(spec.name)
    return dict(topics)


async def consumer_lag(settings: CommonSettings) -> Lag:
    rows: list[PartitionLag] = []
    for group, topics in groups_and_topics(settings).items():
        async with reader(settings, group_id=group) as consumer:
            # All named before any is assigned (see `partitions`).
            tps = [tp for topic in topics for tp in await partitions(consumer, topic, settings.kafka_bootstrap_servers)]
            begins = await consumer.beginning_offsets(tps)
            ends = await end_offsets(consumer, tps)
            for tp in tps:
                committed = await consumer.committed(tp)
                position = begins[tp] if committed is None else max(committed, begins[tp])
                rows.append(PartitionLag(group, tp.topic, tp.partition, committed, ends[tp], ends[tp] - position))
    return Lag(rows)
