"""`expertmatch dlq` against the real broker: dead letters written by a real consumer loop, listed,
shown and sent back to their topic, once."""

from __future__ import annotations

import json

import pytest

from services.operations.broker import CommandFailed
from services.operations.dlq import list_dead_letters, redrive, show_dead_letter
from shared.consumer import ConsumerLoop
from shared.events import EVENT_HEADERS, encode_event, event_key
from shared.kafka import make_consumer
from shared.topics import POSTS, dlq
from tests.support.cli import expertmatch
from tests.support.events import answer_event
from tests.support.topics import read_records

pytestmark = pytest.mark.integration

BROKEN = answer_event(3)


async def _drain(settings, producer, handler) -> None:
    """What the matcher's loop does with the posts topic, under a group of the test's own."""
    consumer = make_consumer(settings, settings.topic(POSTS), group_id=settings.topic("worker"))
    await consumer.start()
    try:
        await ConsumerLoop(consumer=consumer, producer=producer, handler=handler, name="worker").drain()
    finally:
        await consumer.stop()


async def _refuse_p3(events):
    for event in events:
        if event.data.id == "p3":
            raise ValueError("p3 cannot be handled\nsecond line of the error")


@pytest.fixture
async def dead_letters(common_settings, producer):
    """Two dead letters on posts.dlq: a message that is no event (offset 0), then p3, which the handler refused (1).

    Returns where each came from on posts: one partition, so the loop meets them in that order.
    """
    topic = common_settings.topic(POSTS)
    poison = await producer.send_and_wait(topic, b"{not json", key=b"acme/t1", partition=2)
    broken = await producer.send_and_wait(topic, encode_event(BROKEN), key=event_key(BROKEN),
                                          headers=list(EVENT_HEADERS), partition=2)
    await _drain(common_settings, producer, _refuse_p3)
    return poison, broken


async def test_list_shows_each_dead_letter_where_it_came_from_and_why(common_settings, dead_letters):
    poison, broken = dead_letters

    listing = await list_dead_letters(common_settings, "posts")
    heading, columns, first, second = listing.lines()

    assert heading == f"{common_settings.topic('posts.dlq')}: 2 dead letters; redrive mark 0"
    assert columns.split() == ["offset", "from", "consumer", "event", "error"]
    assert first.split(maxsplit=4) == ["0", f"{poison.partition}@{poison.offset}", "worker", "-",
                                       first.split(maxsplit=4)[4]]
    assert first.split(maxsplit=4)[4].startswith("UndecodableEvent: ")
    assert second.split() == [
        "1", f"{broken.partition}@{broken.offset}", "worker", "post.upserted", str(BROKEN.id),
        "ValueError:", "p3", "cannot", "be", "handled",
    ], "only the error's first line"


async def test_show_gives_the_headers_the_trace_and_the_value_as_json(common_settings, dead_letters):
    _, broken = dead_letters

    lines = (await show_dead_letter(common_settings, "posts", "1")).lines()

    assert lines[0].startswith(f"{common_settings.topic('posts.dlq')} 1, dead-lettered 20")
    assert lines[1] == f"key: {event_key(BROKEN).decode()}"
    for header in ("content-type: application/cloudevents+json; charset=utf-8",
                   "error.type: ValueError",
                   f"original.topic: {common_settings.topic(POSTS)}",
                   f"original.partition: {broken.partition}",
                   f"original.offset: {broken.offset}",
                   "consumer: worker",
                   "error:", "  ValueError: p3 cannot be handled", "  second line of the error",
                   "error.trace:", "  Traceback (most recent call last):"):
        assert header in lines
    value = lines[lines.index("value:") + 1:]
    assert len(value) > 1, "indented JSON"
    assert json.loads("\n".join(value)) == json.loads(encode_event(BROKEN))


async def test_show_of_an_offset_the_topic_does_not_hold_says_what_it_holds(common_settings, dead_letters):
    with pytest.raises(CommandFailed, match="no dead letter at 7 on .*posts.dlq: it holds 0 to 1"):
        await show_dead_letter(common_settings, "posts", "7")


async def test_redrive_sends_them_back_with_their_key_and_headers_and_only_once(common_settings, dead_letters):
    topic = common_settings.topic(POSTS)

    first = await redrive(common_settings, "posts")
    again = await redrive(common_settings, "posts")

    assert first.lines() == [
        f"sent 0 back to {topic} (key acme/t1)",
        f"sent 1 back to {topic} (key {event_key(BROKEN).decode()})",
        f"{common_settings.topic('posts.dlq')}: redrove 2; redrive mark 2",
    ]
    assert again.lines() == [f"{common_settings.topic('posts.dlq')}: redrove 0; redrive mark 2"]
    # Each as it was first sent, once more: the two originals and the two redriven, no third of either.
    held = await read_records(common_settings, topic, 4, linger=1.0)
    assert sorted((record.key, record.value, record.headers) for record in held) == sorted(
        [(b"acme/t1", b"{not json", ()), (event_key(BROKEN), encode_event(BROKEN), EVENT_HEADERS)] * 2
    ), "the original headers, not the dead letter's"


async def test_a_chosen_redrive_passes_over_the_others_and_a_fixed_consumer_handles_it(
    common_settings, dead_letters, producer
):
    result = await redrive(common_settings, "posts", ["1"])

    assert result.lines()[-2:] == [
        f"passed over 0: not chosen, it stays on {common_settings.topic('posts.dlq')}",
        f"{common_settings.topic('posts.dlq')}: redrove 1; redrive mark 2",
    ]
    handled: list[str] = []

    async def fixed(events):
        handled.extend(event.data.id for event in events)

    await _drain(common_settings, producer, fixed)
    assert handled == ["p3"]
    assert (await redrive(common_settings, "posts")).sent == [], "nothing left above the mark"
    with pytest.raises(CommandFailed, match="0 on .* is below the redrive mark \\(2\\).*nothing was sent"):
        await redrive(common_settings, "posts", ["0"])
    listing = await list_dead_letters(common_settings, "posts.dlq")
    assert len(listing.letters) == 2, "a redrive takes nothing off the dead-letter topic"


async def test_a_chosen_offset_the_topic_does_not_hold_sends_nothing(common_settings, dead_letters):
    with pytest.raises(CommandFailed, match="no dead letter at 5 on .*nothing was sent"):
        await redrive(common_settings, "posts", ["1", "5"])

    assert len((await redrive(common_settings, "posts")).sent) == 2, "the refused redrive moved no mark"


async def test_the_command_prints_what_the_operator_reads(common_settings, dead_letters, tmp_path):
    env = {"KAFKA_BOOTSTRAP_SERVERS": common_settings.kafka_bootstrap_servers,
           "KAFKA_TOPIC_PREFIX": common_settings.kafka_topic_prefix}

    listed = expertmatch("dlq", "list", "posts", env=env, cwd=tmp_path)
    missing = expertmatch("dlq", "show", "posts", "9", env=env, cwd=tmp_path)
    no_topic = expertmatch("dlq", "list", "nosuch", env=env, cwd=tmp_path)

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == (await list_dead_letters(common_settings, "posts")).lines()
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"expertmatch: no dead letter at 9 on {common_settings.topic(dlq(POSTS))}: it holds 0 to 1"
    )
    assert no_topic.returncode == 1
    assert no_topic.stderr.strip() == (f"expertmatch: no topic {common_settings.topic('nosuch.dlq')} on the broker "
                                       f"at {common_settings.kafka_bootstrap_servers}")
