"""The whole pipeline as processes: history and a question over HTTP, a signed invitation at a real receiver."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from aiokafka import TopicPartition
from standardwebhooks.webhooks import Webhook

from shared.kafka import make_consumer, make_producer
from shared.settings import CommonSettings
from shared.topics import MATCHES
from tests.support.history import HISTORY, history_posts
from tests.support.receiver import Receiver
from tests.support.services import ServiceProcesses
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

ACME = {"Authorization": "Bearer acme-key"}
GLOBEX = {"Authorization": "Bearer globex-key"}

QUESTION = {
    "id": "q-new",
    "thread_id": "q-new",
    "author_id": "dana",
    "kind": "question",
    "title": "Kubernetes pod keeps getting OOMKilled and restarting",
    "body": "<p>Our <b>payments</b> pod restarts with OOMKilled every few hours. How do I find out "
            "which container needs more memory and change its limit?</p>",
    "tags": ["kubernetes"],
}


async def _notifier_caught_up(settings: CommonSettings) -> bool:
    """Every match on the topic has been handled and committed by the notifier's group."""
    ends: dict[TopicPartition, int] = {}
    for record in await _read_matches(settings):
        tp = TopicPartition(record.topic, record.partition)
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    # Assigned, not subscribed: reads the group's commits without joining it.
    consumer = make_consumer(settings, group_id=settings.topic("notifier"))
    await consumer.start()
    try:
        consumer.assign(list(ends))
        committed = {tp: await consumer.committed(tp) or 0 for tp in ends}
        return all(committed[tp] >= end for tp, end in ends.items())
    finally:
        await consumer.stop()


@pytest.fixture
def system(broker, topic_prefix, tmp_path):
    services = ServiceProcesses.of_test(
        broker, topic_prefix, tmp_path,
        api_keys="acme-key:acme,globex-key:globex",
        extra_env={"NOTIFIER_RETRY_SCHEDULE": "0.5,1,2"},
    )
    with services:
        yield services


async def test_a_question_reaches_the_right_colleague_as_a_signed_webhook_once(system, broker, topic_prefix):
    settings = CommonSettings(kafka_bootstrap_servers=broker.bootstrap_servers, kafka_topic_prefix=topic_prefix)
    async with httpx.AsyncClient(timeout=30) as http:
        with Receiver() as receiver:
            created = await http.post(
                f"{system.url('notifier')}/v1/subscriptions", headers=ACME, json={"url": receiver.url}
            )
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]

            answer = await http.post(
                f"{system.url('ingest')}/v1/posts/batch", headers=ACME, json={"posts": history_posts()}
            )
            assert answer.status_code == 202, answer.text

            async def indexed():
                stats = await http.get(f"{system.url('matcher')}/v1/index/stats", headers=ACME)
                return stats.json()["contributions"] == len(HISTORY)

            await until(indexed, 60, "the history to be indexed")
            assert receiver.received() == [], "backfilled questions must not invite anyone"

            posted_at = time.time()
            answer = await http.post(f"{system.url('ingest')}/v1/posts", headers=ACME, json=QUESTION)
            assert answer.status_code == 202, answer.text

            async def invited():
                got = await http.get(
                    f"{system.url('notifier')}/v1/invitations", headers=ACME, params={"thread_id": "q-new"}
                )
                rows = got.json()
                done = rows and all(d["state"] == "delivered" for row in rows for d in row["deliveries"])
                return rows if done else None

            invitations = await until(invited, 60, "invitations to be delivered")
            requests = await receiver.wait_for(len(invitations), timeout=10)
            latency = min(r.at for r in requests) - posted_at

            people = [row["person_id"] for row in invitations]
            assert len(people) == len(set(people)) <= 3
            assert "dana" not in people, "the asker is never invited"

            payloads = []
            for request in requests:
                # The independent Standard Webhooks implementation must accept every signature.
                Webhook(secret).verify(request.body, request.headers)
                payloads.append(json.loads(request.body))
            assert {p["type"] for p in payloads} == {"invitation.created"}
            best = max(payloads, key=lambda p: p["data"]["score"])
            assert best["data"]["person_id"] == "kim", [p["data"]["person_id"] for p in payloads]
            assert best["data"]["thread_id"] == "q-new"
            assert best["data"]["evidence"], "the invitation says why"
            assert any("memory" in e["snippet"].lower() for e in best["data"]["evidence"])
            assert latency < 30

            # Globex sees none of it.
            other = await http.get(f"{system.url('notifier')}/v1/invitations", headers=GLOBEX)
            assert other.json() == []
            search = await http.post(
                f"{system.url('matcher')}/v1/experts/search", headers=GLOBEX, json={"text": "kubernetes memory"}
            )
            assert search.json()["experts"] == []

            # The same match delivered again, and the question posted again: no second invitation.
            await _redeliver_matches(settings)
            answer = await http.post(f"{system.url('ingest')}/v1/posts", headers=ACME, json=QUESTION)
            assert answer.status_code == 202

            async def matched_twice_more():
                return await _count_matches(settings) >= 3 and await _notifier_caught_up(settings)

            await until(matched_twice_more, 60, "the notifier to handle the repeated matches")
            again = await http.get(
                f"{system.url('notifier')}/v1/invitations", headers=ACME, params={"thread_id": "q-new"}
            )
            assert sorted(row["id"] for row in again.json()) == sorted(row["id"] for row in invitations)
            assert len(receiver.received()) == len(requests)


async def test_markup_in_titles_reaches_no_webhook_as_markup(system):
    script = "<script>alert(1)</script>"
    history = [{**post, "title": script + post["title"]} if post["title"] else post for post in history_posts()]
    question = {**QUESTION, "title": f"{script}Kafka lag <b>and</b> OOMKilled pods"}
    async with httpx.AsyncClient(timeout=30) as http:
        with Receiver() as receiver:
            created = await http.post(
                f"{system.url('notifier')}/v1/subscriptions", headers=ACME, json={"url": receiver.url}
            )
            assert created.status_code == 201, created.text
            answer = await http.post(f"{system.url('ingest')}/v1/posts/batch", headers=ACME, json={"posts": history})
            assert answer.status_code == 202, answer.text

            async def indexed():
                stats = await http.get(f"{system.url('matcher')}/v1/index/stats", headers=ACME)
                return stats.json()["contributions"] == len(HISTORY)

            await until(indexed, 60, "the history to be indexed")
            answer = await http.post(f"{system.url('ingest')}/v1/posts", headers=ACME, json=question)
            assert answer.status_code == 202, answer.text

            async def delivered():
                got = await http.get(
                    f"{system.url('notifier')}/v1/invitations", headers=ACME, params={"thread_id": "q-new"}
                )
                rows = got.json()
                return (
                    rows if rows and all(d["state"] == "delivered" for row in rows for d in row["deliveries"]) else None
                )

            invitations = await until(delivered, 60, "invitations to be delivered")
            requests = await receiver.wait_for(len(invitations), timeout=10)

    payloads = [json.loads(request.body)["data"] for request in requests]
    assert "kim" in {p["person_id"] for p in payloads}
    for payload in payloads:
        assert payload["question"]["title"] == "Kafka lag and OOMKilled pods"
        assert "<" not in payload["why"] and "alert" not in payload["why"], payload["why"]
        assert all("<" not in e["title"] and "alert" not in e["title"] for e in payload["evidence"])
    [kim] = [p for p in payloads if p["person_id"] == "kim"]
    assert "How do I raise the memory limit of a Kubernetes deployment?" in {e["title"] for e in kim["evidence"]}
    assert "“" in kim["why"]  # a post of theirs, quoted by its plain title
    assert {row["question_title"] for row in invitations} == {"Kafka lag and OOMKilled pods"}


async def test_not_my_area_on_an_invitation_keeps_that_person_from_the_next_such_question(system):
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            f"{system.url('ingest')}/v1/posts/batch", headers=ACME, json={"posts": history_posts()}
        )
        assert answer.status_code == 202, answer.text

        async def invitations_to(thread: str, expected: int | None = None):
            got = await http.get(f"{system.url('notifier')}/v1/invitations", headers=ACME, params={"thread_id": thread})
            rows = got.json()
            return rows if rows and (expected is None or len(rows) >= expected) else None

        async def indexed():
            stats = await http.get(f"{system.url('matcher')}/v1/index/stats", headers=ACME)
            return stats.json()["contributions"] == len(HISTORY)

        await until(indexed, 60, "the history to be indexed")
        await http.post(f"{system.url('ingest')}/v1/posts", headers=ACME, json=QUESTION)
        first = await until(lambda: invitations_to("q-new"), 60, "the first question's invitations")
        [kims] = [row for row in first if row["person_id"] == "kim"]

        said = await http.post(
            f"{system.url('notifier')}/v1/invitations/{kims['id']}/response",
            headers=ACME,
            json={"response": "not_my_area"},
        )
        assert said.status_code == 201, said.text

        async def kim_sunk():
            search = await http.post(
                f"{system.url('matcher')}/v1/experts/search", headers=ACME,
                json={"text": f"{QUESTION['title']}\n{QUESTION['body']}", "exclude": ["dana"]},
            )
            experts = search.json()["experts"]
            return experts and experts[0]["person_id"] != "kim" and experts

        # The response travels notifier -> responses topic -> matcher.
        experts = await until(kim_sunk, 60, "the matcher to take the response into account")
        # On the same question, a "not my area" sinks the person to the bottom of the pool.
        assert experts[-1]["person_id"] == "kim"

        again = {**QUESTION, "id": "q-again", "thread_id": "q-again", "author_id": "lee"}
        await http.post(f"{system.url('ingest')}/v1/posts", headers=ACME, json=again)

        async def decided():
            got = await http.get(f"{system.url('notifier')}/v1/threads/q-again/invitations", headers=ACME)
            found = got.json()
            return found if found["skipped"] else None

        second = await until(decided, 60, "the second question's decisions")
        # kim is the only one close to it, and said it is not their area: nobody else is invited
        # for being less far, and kim is not asked again.
        assert second["invited"] == []
        reasons = {row["person_id"]: row["reason"] for row in second["skipped"]}
        assert reasons["kim"] == "not_my_area"
        assert {reason for person, reason in reasons.items() if person != "kim"} == {"not_close_enough"}
        # Far from that question, kim is still the one asked.
        hits = await http.post(
            f"{system.url('matcher')}/v1/experts/search",
            headers=ACME,
            json={"text": "helm rollback lost the TLS secret"},
        )
        assert hits.json()["experts"][0]["person_id"] == "kim"


async def _read_matches(settings: CommonSettings):
    consumer = make_consumer(settings, settings.topic(MATCHES), group_id=None)
    await consumer.start()
    try:
        await consumer.seek_to_beginning()
        records = []
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                return records
            records.extend(r for part in batch.values() for r in part)
    finally:
        await consumer.stop()


async def _count_matches(settings: CommonSettings) -> int:
    return len(await _read_matches(settings))


async def _redeliver_matches(settings: CommonSettings) -> None:
    """Send the very same match record again, as a broker redelivery would."""
    records = await _read_matches(settings)
    assert len(records) == 1, "one question, one match"
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(records[0].topic, records[0].value, key=records[0].key)
    finally:
        await producer.stop()
