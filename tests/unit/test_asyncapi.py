"""docs/asyncapi.json: what the event models say, a valid AsyncAPI 3 document, and true of real events."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from shared import asyncapi
from shared.events import EVENT_HEADERS, encode_event
from tests.support.events import one_of_each_event

SPEC = Path(__file__).resolve().parents[1] / "schemas" / "asyncapi-3.0.0.json"


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(asyncapi.DOCUMENT.read_text())


def test_the_document_is_what_the_models_say():
    assert asyncapi.main(["--check"]) == 0, "run `python -m shared.asyncapi` and commit docs/asyncapi.json"
    assert asyncapi.DOCUMENT.read_text() == asyncapi.render()


def test_the_document_is_valid_asyncapi_3(document):
    validator = jsonschema.Draft7Validator(json.loads(SPEC.read_text()))
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


def test_every_topic_has_a_channel_and_who_sends_and_receives_it(document):
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {"posts", "posts.backfill", "matches", "responses",
                         "posts.dlq", "posts.backfill.dlq", "matches.dlq", "responses.dlq"}
    operations = document["operations"]
    assert operations["ingestSendsPosts"]["action"] == "send"
    assert operations["notifierReceivesMatches"]["action"] == "receive"


def _payload_validator(document: dict, message: dict) -> jsonschema.Draft202012Validator:
    # The payload's $refs point into the document's components: validate with the document as the root.
    return jsonschema.Draft202012Validator({"allOf": [message["payload"]], "components": document["components"]})


def test_real_events_match_their_message_and_headers(document):
    messages = document["components"]["messages"]
    headers_schema = document["components"]["schemas"][messages["post-upserted"]["headers"]["$ref"].rsplit("/", 1)[1]]
    headers = {name: value.decode() for name, value in EVENT_HEADERS}
    jsonschema.validate(headers, headers_schema)
    for event in one_of_each_event():
        message = messages[event.type.replace(".", "-")]
        payload = json.loads(encode_event(event))
        errors = [e.message for e in _payload_validator(document, message).iter_errors(payload)]
        assert errors == [], event.type


def test_an_event_missing_a_field_does_not_match(document):
    message = document["components"]["messages"]["experts-matched"]
    payload = json.loads(encode_event(one_of_each_event()[3]))
    del payload["data"]["question"]
    assert list(_payload_validator(document, message).iter_errors(payload))
