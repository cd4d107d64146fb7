"""The matcher on the real broker and a real Qdrant Edge shard: posts in, matches and dead letters out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.matcher.bootstrap import bootstrap
from services.matcher.index import EdgeIndex
from services.matcher.settings import MatcherSettings
from shared.events import (
    ExpertsMatched,
    InvitationResponded,
    InvitationResponse,
    Post,
    PostDeleted,
    PostKind,
    PostRef,
    PostUpserted,
    ResponseKind,
    decode_event,
)
from shared.kafka import publish
from shared.topics import MATCHES, POSTS, RESPONSES, dlq
from tests.fakes import FakeEmbedder
from tests.support.topics import read_records
from tests.support.waiting import until

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def upserted(post_id, author, kind, body, *, thread, title=None, backfill=False, at=None) -> PostUpserted:
    return PostUpserted(
        tenant="acme",
        data=Post(
            id=post_id, tenant="acme", thread_id=thread, author_id=author, kind=kind, title=title,
            body=body, created_at=at or NOW - timedelta(days=20), backfill=backfill,
        ),
    )


HISTORY = [
    upserted(
        "q1",
        "carol",
        PostKind.QUESTION,
        "pods keep restarting",
        thread="k1",
        title="Kubernetes pods restart",
        backfill=True,
    ),
    upserted(
        "a1", "kim", PostKind.ANSWER, "check the kubernetes liveness probe of the pods", thread="k1", backfill=True
    ),
    upserted(
        "q2", "dave", PostKind.QUESTION, "ingress gives 502", thread="k2", title="Kubernetes ingress 502", backfill=True
    ),
    upserted(
        "a2", "kim", PostKind.ANSWER, "the kubernetes service port must match the pods port", thread="k2", backfill=True
    ),
    upserted("c2", "lee", PostKind.COMMENT, "same kubernetes ingress problem here", thread="k2", backfill=True),
    upserted("a3", "pat", PostKind.ANSWER, "payroll runs on the first of the month", thread="p1", backfill=True),
]


@pytest.fixture
async def matcher(common_settings):
    settings = MatcherSettings(**common_settings.model_dump(), batch_size=16)
    index = await EdgeIndex.open(settings.edge_path)
    try:
        async with bootstrap(settings, embedder=FakeEmbedder(), index=index) as running:
            yield settings, running
    finally:
        await index.close()


async def handle_until(matcher, condition, timeout: float = 30.0) -> None:
    """Drain the loop until `condition()` holds: joining the group may take a few polls."""

    async def handled() -> bool:
        if await condition():
            return True
        for loop in matcher.loops:
            await loop.drain(idle_polls=1)
        return False

    await until(handled, timeout, what="the matcher")


def index_holds(matcher, count: int):
    async def check() -> bool:
        return await matcher.index.count("acme") == count

    return check


async def test_a_new_question_is_matched_and_backfill_is_not(matcher, producer):
    settings, running = matcher
    await publish(producer, settings.topic(POSTS), HISTORY)
    await handle_until(running, index_holds(running, len(HISTORY)))

    follow_up = upserted("a4", "dave", PostKind.ANSWER, "thanks, that fixed kubernetes", thread="k9")
    ask = upserted("q9", "erin", PostKind.QUESTION, "my kubernetes pods restart", thread="k9", title="Kubernetes pods")
    await publish(producer, settings.topic(POSTS), [follow_up, ask])
    await handle_until(running, index_holds(running, len(HISTORY) + 2))

    [record] = await read_records(settings, settings.topic(MATCHES), 1, linger=0.5)
    match = decode_event(record.value)
    assert isinstance(match, ExpertsMatched) and match.tenant == "acme"
    assert record.key == b"acme/k9"
    assert match.data.question.post_id == "q9"
    people = [c.person_id for c in match.data.candidates]
    assert people[0] == "kim"
    assert "erin" not in people and "dave" not in people  # the asker and a participant
    assert {e.post_id for e in match.data.candidates[0].evidence} == {"a1", "a2"}


async def test_a_malformed_message_is_dead_lettered_and_the_rest_handled(matcher, producer):
    settings, running = matcher
    await producer.send_and_wait(settings.topic(POSTS), b'{"type": "post.upserted", "tenant": "acme"}', key=b"acme/k1")
    await publish(producer, settings.topic(POSTS), HISTORY[:2])
    await handle_until(running, index_holds(running, 2))

    [dead] = await read_records(settings, dlq(settings.topic(POSTS)), 1, linger=0.5)
    headers = dict(dead.headers)
    assert b"data" in headers["error"]  # names the missing field
    assert dead.value == b'{"type": "post.upserted", "tenant": "acme"}'


async def test_a_delete_removes_the_post_from_search(matcher, producer):
    settings, running = matcher
    await publish(producer, settings.topic(POSTS), HISTORY)
    await handle_until(running, index_holds(running, len(HISTORY)))
    await publish(
        producer, settings.topic(POSTS), [PostDeleted(tenant="acme", data=PostRef(post_id="a3", thread_id="p1"))]
    )
    await handle_until(running, index_holds(running, len(HISTORY) - 1))

    experts = await running.service.search(tenant="acme", text="payroll first of the month", limit=5)
    assert "pat" not in [e.person_id for e in experts]


async def test_a_response_on_the_responses_topic_moves_the_next_similar_question(matcher, producer):
    settings, running = matcher
    asked = upserted(
        "q5", "erin", PostKind.QUESTION, "kubernetes pods keep restarting", thread="k5", title="Kubernetes pods"
    )
    await publish(producer, settings.topic(POSTS), [*HISTORY, asked])
    await handle_until(running, index_holds(running, len(HISTORY) + 1))
    [first] = await read_records(settings, settings.topic(MATCHES), 1, linger=0.5)
    assert decode_event(first.value).data.candidates[0].person_id == "kim"

    said = InvitationResponded(
        tenant="acme",
        data=InvitationResponse(
            invitation_id="inv-1", thread_id="k5", person_id="kim", response=ResponseKind.NOT_MY_AREA,
            question_post_id="q5", question_title="Kubernetes pods", responded_at=NOW - timedelta(minutes=5),
        ),
    )
    await publish(producer, settings.topic(RESPONSES), [said])

    async def recorded() -> bool:
        return bool(await running.index.feedback_near("acme", FakeEmbedder().vector("kubernetes pods"), limit=5))

    await handle_until(running, recorded)
    # Asked after the response: a ranking reads everything as of its question's time.
    again = upserted(
        "q6", "lee", PostKind.QUESTION, "kubernetes pods keep restarting", thread="k6", title="Kubernetes pods", at=NOW
    )
    await publish(producer, settings.topic(POSTS), [again])
    await handle_until(running, index_holds(running, len(HISTORY) + 2))

    second = [decode_event(r.value) for r in await read_records(settings, settings.topic(MATCHES), 2, linger=0.5)]
    [match] = [m for m in second if m.data.question.post_id == "q6"]
    assert match.data.candidates[0].person_id != "kim"
