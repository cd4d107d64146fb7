"""`expertmatch import` against a stand-in ingest: mapping, empty bodies, retries on 503, clear refusals."""

from __future__ import annotations

import json

import httpx
import pytest

from services.evaluation.importer import ImportFailed, import_dump, send_batch, to_payload
from tests.unit.test_eval_replay import a, q

pytestmark = pytest.mark.unit

DUMP = """<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" AcceptedAnswerId="2" CreationDate="2016-03-01T10:00:00.000" Score="4"
       OwnerUserId="11" Title="Dry hopping time" Body="&lt;p&gt;How long?&lt;/p&gt;" Tags="&lt;hops&gt;&lt;ipa&gt;" />
  <row Id="2" PostTypeId="2" ParentId="1" CreationDate="2016-03-01T11:00:00.000" Score="7" OwnerUserId="12"
       Body="&lt;p&gt;Three to five days.&lt;/p&gt;" />
  <row Id="3" PostTypeId="2" ParentId="1" CreationDate="2016-03-01T12:00:00.000" Score="0" OwnerUserId="13" Body="" />
  <row Id="4" PostTypeId="2" ParentId="1" CreationDate="2016-03-01T13:00:00.000" Score="0" Body="deleted user" />
  <row Id="5" PostTypeId="5" CreationDate="2016-03-01T13:00:00.000" OwnerUserId="11" Body="tag wiki" />
</posts>
"""


def ingest(*statuses: int):
    """A stand-in ingest answering the given statuses in turn (then 202), recording each batch."""
    received: list[list[dict]] = []
    answers = list(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        received.append(json.loads(request.content)["posts"])
        status = answers.pop(0) if answers else 202
        body = {"detail": [{"loc": ["body", "posts", 0, "body"], "msg": "body has no text"}]} if status == 422 else {}
        return httpx.Response(status, json=body)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://ingest")
    return client, received


async def no_sleep(seconds: float) -> None:
    pass


def test_a_post_maps_to_the_ingest_schema_as_backfill():
    payload, reason = to_payload(a(2, "bob", 1, "<p>go finer</p>", accepted=True), "Espresso grind")
    assert reason is None
    assert payload["id"] == "2" and payload["thread_id"] == "1" and payload["author_id"] == "bob"
    assert payload["kind"] == "answer" and payload["accepted"] is True and payload["backfill"] is True
    assert payload["body"] == "<p>go finer</p>"


def test_a_post_without_text_carries_its_thread_title():
    payload, _ = to_payload(a(2, "bob", 1, "<p> </p>"), "Espresso grind")
    assert payload["body"] == "Espresso grind"
    assert to_payload(q(1, "ann", ""), None) == (None, "no text and no thread title")


async def test_import_sends_every_usable_post_and_counts_the_rest(tmp_path):
    dump = tmp_path / "Posts.xml"
    dump.write_text(DUMP)
    client, received = ingest()

    summary = await import_dump(dump, key="acme-key", client=client, batch=2, show_progress=False)

    assert [[p["id"] for p in batch] for batch in received] == [["1", "2"], ["3"]]
    question, accepted, empty = (p for batch in received for p in batch)
    assert question["tags"] == ["hops", "ipa"] and question["title"] == "Dry hopping time"
    assert question["created_at"] == "2016-03-01T10:00:00+00:00" and question["score"] == 4
    assert accepted["accepted"] is True and accepted["score"] == 7
    assert empty["body"] == "Dry hopping time"
    assert summary.sent == 3 and summary.titled == 1
    assert summary.skipped == {"no owner (deleted user)": 1, "not a question or answer": 1}
    assert "skipped 1: no owner (deleted user)" in summary.describe()


async def test_a_batch_is_retried_while_the_ingest_answers_503():
    client, received = ingest(503, 503)
    await send_batch(client, [{"id": "1"}], sleep=no_sleep)
    assert len(received) == 3


async def test_a_refused_key_is_a_clear_error():
    client, _ = ingest(401)
    with pytest.raises(ImportFailed, match="refused the API key"):
        await send_batch(client, [{"id": "1"}], sleep=no_sleep)


async def test_invalid_posts_name_the_field_the_ingest_rejected():
    client, received = ingest(422)
    with pytest.raises(ImportFailed, match=r"422 for posts 1\.\.1.*body has no text"):
        await send_batch(client, [{"id": "1"}], sleep=no_sleep)
    assert len(received) == 1
