"""`expertmatch lag` against the real broker: what a group has committed, against what its topics hold."""

from __future__ import annotations

import pytest

from services.operations.lag import consumer_lag, groups_and_topics
from shared.kafka import make_consumer, publish
from shared.topics import POSTS, RESPONSES
from tests.support.cli import expertmatch
from tests.support.events import answer_event

pytestmark = pytest.mark.integration

PRODUCED, CONSUMED = 9, 4


async def _consume_and_commit(settings, group: str, topic: str, count: int) -> None:
    """A member of `group` that handles `count` records of `topic` and commits just past them."""
    consumer = make_consumer(settings, topic, group_id=group)
    await consumer.start()
    try:
        taken = 0
        while taken < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=count - taken)
            for tp, records in batches.items():
                await consumer.commit({tp: records[-1].offset + 1})
                taken += len(records)
    finally:
        await consumer.stop()


@pytest.fixture
async def matcher_behind(common_settings, producer):
    """PRODUCED posts, of which the matcher's group has committed CONSUMED."""
    await publish(producer, common_settings.topic(POSTS), [answer_event(n, threads=PRODUCED) for n in range(PRODUCED)])
    await _consume_and_commit(common_settings, common_settings.topic("matcher"), common_settings.topic(POSTS), CONSUMED)


async def test_lag_is_what_the_topic_holds_past_the_groups_commits(common_settings, matcher_behind):
    lag = await consumer_lag(common_settings)

    matcher, posts = common_settings.topic("matcher"), common_settings.topic(POSTS)
    rows = [row for row in lag.partitions if row.group == matcher and row.topic == posts]
    assert len(rows) == 6, "every partition of posts"
    assert sum(row.end for row in rows) == PRODUCED
    assert sum(row.committed or 0 for row in rows) == CONSUMED
    assert lag.total(matcher) == PRODUCED - CONSUMED, "its responses are empty"
    assert lag.total(common_settings.topic("notifier-posts")) == PRODUCED, "never committed: all of it"
    assert lag.total(common_settings.topic("notifier")) == 0


async def test_every_group_of_the_topics_file_is_listed(common_settings, matcher_behind):
    groups = groups_and_topics(common_settings)

    assert groups[common_settings.topic("matcher")] == [common_settings.topic(POSTS), common_settings.topic(RESPONSES)]
    assert {row.group for row in (await consumer_lag(common_settings)).partitions} == set(groups)


async def test_the_command_prints_a_row_per_partition_and_a_total_per_group(common_settings, matcher_behind, tmp_path):
    env = {"KAFKA_BOOTSTRAP_SERVERS": common_settings.kafka_bootstrap_servers,
           "KAFKA_TOPIC_PREFIX": common_settings.kafka_topic_prefix}

    ran = expertmatch("lag", env=env, cwd=tmp_path)

    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].split() == ["group", "topic", "partition", "committed", "end", "lag"]
    totals = {line.split()[0]: int(line.split()[-1]) for line in lines if line.split()[1] == "total"}
    assert totals == {
        common_settings.topic("matcher"): PRODUCED - CONSUMED,
        common_settings.topic("notifier-posts"): PRODUCED,
        common_settings.topic("matcher-backfill"): 0,
        common_settings.topic("notifier"): 0,
    }
    uncommitted = [line.split() for line in lines if line.startswith(common_settings.topic("notifier-posts") + " ")]
    assert all(row[3] == "-" for row in uncommitted if row[1] != "total"), "never committed shows as -"
