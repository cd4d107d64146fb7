"""The services' logs as processes write them: JSON lines from which one question can be followed by its ids."""

from __future__ import annotations

import json

import httpx
import pytest

from services.notifier.policy import SkipReason
from tests.support.history import subscribe_and_index_history
from tests.support.receiver import Receiver
from tests.support.services import ServiceProcesses
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

ACME = {"Authorization": "Bearer acme-key"}
BODY = "Our payments pod restarts with OOMKilled every few hours. Which memory limit do I raise?"
QUESTION = {
    "id": "q-logged", "thread_id": "t-logged", "author_id": "dana", "kind": "question",
    "title": "Kubernetes pod keeps getting OOMKilled and restarting", "body": BODY, "tags": ["kubernetes"],
}


def json_lines(system: ServiceProcesses, name: str) -> list[dict]:
    """Every line of a service's output, each of which must be one JSON object with the fixed fields."""
    lines = []
    for text in system.log(name).splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            pytest.fail(f"{name} wrote a line that is not JSON: {text!r}")
        assert {"time", "level", "service", "logger", "message"} <= set(line), text
        assert line["service"] == name
        lines.append(line)
    return lines


async def test_a_question_is_followed_through_the_logs_by_its_tenant_thread_post_and_invitation(
    broker, topic_prefix, tmp_path
):
    system = ServiceProcesses.of_test(broker, topic_prefix, tmp_path)
    with system, Receiver() as receiver:
        async with httpx.AsyncClient(timeout=30) as http:
            secret = (await subscribe_and_index_history(http, system, receiver, headers=ACME))["secret"]
            asked = await http.post(f"{system.url('ingest')}/v1/posts", headers=ACME, json=QUESTION)
            assert asked.status_code == 202, asked.text

            async def delivered():
                got = await http.get(f"{system.url('notifier')}/v1/invitations", headers=ACME,
                                     params={"thread_id": "t-logged"})
                rows = got.json()
                return rows if rows and all(d["state"] == "delivered" for r in rows for d in r["deliveries"]) else None

            invitations = {row["id"]: row["person_id"] for row in await until(delivered, 60, "the invitations")}

    ids = {"tenant": "acme", "thread_id": "t-logged", "post_id": "q-logged"}
    matcher, notifier, ingest = (json_lines(system, name) for name in ("matcher", "notifier", "ingest"))

    [match] = [line for line in matcher if line.get("event") == "match" and line.get("post_id") == "q-logged"]
    assert {name: match[name] for name in ids} == ids
    assert match["candidates"] and len(match["candidates"]) <= 5 and match["pool"] >= match["ranked"]
    assert match["candidates"][0] == {"person_id": "kim", "score": match["candidates"][0]["score"]}

    [decision] = [line for line in notifier if line.get("event") == "invite" and line.get("post_id") == "q-logged"]
    assert {name: decision[name] for name in ids} == ids
    assert {i["invitation_id"]: i["person_id"] for i in decision["invited"]} == invitations
    assert {s["reason"] for s in decision["skipped"]} <= set(SkipReason)

    attempts = [line for line in notifier if line.get("event") == "delivery_attempt"]
    assert {line["invitation_id"] for line in attempts} == set(invitations)
    assert all((line["tenant"], line["status"], line["state"]) == ("acme", 200, "delivered") for line in attempts)

    # The tenant a request authenticated as is on its access log line.
    [posted] = [line for line in ingest if line["logger"] == "uvicorn.access" and '"POST /v1/posts ' in line["message"]]
    assert posted["tenant"] == "acme"

    everything = "\n".join(system.log(name) for name in ("ingest", "matcher", "notifier"))
    assert "payments pod" not in everything, "a post's body is never logged"
    assert secret not in everything, "nor a webhook secret"
