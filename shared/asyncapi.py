"""The AsyncAPI 3 document of expertmatch's topics, built from the event models and deploy/topics.json.

`python -m shared.asyncapi` writes docs/asyncapi.json; `--check` fails when the file is not what the
models say (a test runs it too), so the document cannot drift from the code.

Each channel is a topic (names as deploy/topics.json gives them, under `KAFKA_TOPIC_PREFIX` when one
is set), each message an event model of shared/events.py in the CloudEvents JSON format, sent in the
Kafka binding's structured mode. The dead-letter topics carry the original record with the error in
its headers (shared/consumer.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.events import (
    CONTENT_TYPE,
    ExpertsMatched,
    InvitationResponded,
    PersonErased,
    PostDeleted,
    PostUpserted,
)
from shared.topics import BACKFILL, DEFAULT_TOPICS_FILE, MATCHES, POSTS, RESPONSES, dlq

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.json"

# What travels on each topic, and who sends and receives it.
TOPICS: dict[str, tuple[list[type[BaseModel]], str, list[str]]] = {
    POSTS: ([PostUpserted, PostDeleted, PersonErased], "ingest", ["matcher", "notifier"]),
    BACKFILL: ([PostUpserted], "ingest", ["matcher"]),
    MATCHES: ([ExpertsMatched], "matcher", ["notifier"]),
    RESPONSES: ([InvitationResponded], "notifier", ["matcher"]),
}

_ABOUT = {
    POSTS: "Every post, its deletion and a person's erasure, in thread order (the key is tenant/thread; "
    "an erasure's key is tenant/person). The matcher indexes posts and matches questions; the notifier "
    "learns who replied and erases people.",
    BACKFILL: "Posts imported in bulk (`backfill: true`): a lane of their own that the matcher reads only "
    "while live posts leave it idle, so an import never delays a live question.",
    MATCHES: "The people the matcher found for a question, best first, with the evidence and the score's parts.",
    RESPONSES: "An invitee's response to an invitation; the matcher weighs the next questions like it.",
}

_DEAD_LETTER_HEADERS = {
    "error": "the exception, `Type: message`",
    "error.type": "the exception's class name",
    "error.trace": "the end of its traceback",
    "original.topic": "where the record was read",
    "original.partition": "its partition there",
    "original.offset": "its offset there",
    "consumer": "the consumer loop that gave up on it",
}

KAFKA_BINDING = "0.5.0"


def build() -> dict:
    """The whole document, as a dict ready for JSON."""
    models = [model for events, _, _ in TOPICS.values() for model in events]
    unique = list(dict.fromkeys(models))
    _, schemas = models_json_schema(
        [(model, "serialization") for model in unique], ref_template="#/components/schemas/{model}"
    )
    definitions = json.loads(DEFAULT_TOPICS_FILE.read_text())
    topics = {topic["name"]: topic for topic in definitions["topics"]}
    dlq_defaults = definitions["dlq"]

    channels: dict[str, dict] = {}
    operations: dict[str, dict] = {}
    messages: dict[str, dict] = {}
    for model in unique:
        kind = model.model_fields["type"].default
        messages[_kind(model)] = {
            "name": kind,
            "title": kind,
            "summary": (model.__doc__ or kind).strip().splitlines()[0],
            "contentType": "application/cloudevents+json",
            "headers": {"$ref": "#/components/schemas/CloudEventsHeaders"},
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
            "bindings": {"kafka": {
                "key": {"type": "string", "description": "tenant/thread (tenant/person for person.erased): "
                        "the CloudEvents partitionkey"},
                "bindingVersion": KAFKA_BINDING,
            }},
        }
    for name, (events, sender, receivers) in TOPICS.items():
        spec = topics[name]
        channel = _id(name)
        channels[channel] = {
            "address": name,
            "title": name,
            "description": _ABOUT[name],
            "messages": {_kind(m): {"$ref": f"#/components/messages/{_kind(m)}"} for m in events},
            "bindings": {"kafka": _topic_binding(name, spec["partitions"], spec["retention_ms"])},
        }
        message_refs = [{"$ref": f"#/channels/{channel}/messages/{_kind(m)}"} for m in events]
        operations[f"{sender}Sends{_pascal(name)}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{channel}"}, "messages": message_refs,
            "summary": f"{sender} publishes to {name} (acks=all).",
        }
        for receiver in receivers:
            operations[f"{receiver}Receives{_pascal(name)}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{channel}"}, "messages": message_refs,
                "summary": f"{receiver} consumes {name}, at least once: a crash replays the uncommitted batch.",
            }
        if spec.get("dlq"):
            dead = _id(dlq(name))
            channels[dead] = {
                "address": dlq(name),
                "title": dlq(name),
                "description": f"Records of {name} that a consumer could never handle, as they were, with the "
                "error in their headers. `expertmatch dlq` lists, shows and redrives them.",
                "messages": {"deadLetter": {"$ref": "#/components/messages/deadLetter"}},
                "bindings": {
                    "kafka": _topic_binding(dlq(name), dlq_defaults["partitions"], dlq_defaults["retention_ms"])
                },
            }
            for receiver in receivers:
                operations[f"{receiver}DeadLetters{_pascal(name)}"] = {
                    "action": "send", "channel": {"$ref": f"#/channels/{dead}"},
                    "messages": [{"$ref": f"#/channels/{dead}/messages/deadLetter"}],
                    "summary": f"{receiver} sets aside a record of {name} it cannot handle, and moves on.",
                }
    messages["deadLetter"] = {
        "name": "dead-letter",
        "title": "dead letter",
        "summary": "The original record's value and key, unchanged, and why it was set aside.",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"description": "the original record's value, as it was (it may not be valid JSON)"},
    }
    schemas = dict(schemas["$defs"])
    schemas["CloudEventsHeaders"] = {
        "type": "object",
        "description": "The CloudEvents Kafka binding, structured content mode: the value is the whole event.",
        "properties": {"content-type": {"type": "string", "const": CONTENT_TYPE}},
        "required": ["content-type"],
    }
    schemas["DeadLetterHeaders"] = {
        "type": "object",
        "description": "The original record's headers, and these.",
        "properties": {name: {"type": "string", "description": about} for name, about in _DEAD_LETTER_HEADERS.items()},
        "required": list(_DEAD_LETTER_HEADERS),
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "expertmatch events",
            "version": _version(),
            "description": "The topics between ingest, the matcher and the notifier. Consumers ignore fields "
            "they do not know; producers only ever add fields. Every event is a CloudEvent (specversion 1.0, "
            "source `expertmatch`, extension attribute `tenant`).",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "embedded": {"host": "127.0.0.1:9092", "protocol": "kafka",
                         "description": "`make run`: the embedded broker, kept alive by its supervisor"},
            "compose": {"host": "kafka:9092", "protocol": "kafka", "description": "docker compose: Apache Kafka"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def _topic_binding(name: str, partitions: int, retention_ms: int) -> dict:
    return {"topic": name, "partitions": partitions, "topicConfiguration": {"retention.ms": retention_ms},
            "bindingVersion": KAFKA_BINDING}


def _kind(model: type[BaseModel]) -> str:
    """The component key of an event model's message: its CloudEvents type."""
    return _id(model.model_fields["type"].default)


def _id(name: str) -> str:
    """A component key AsyncAPI accepts (letters, digits, `.`, `_`, `-`)."""
    return name.replace(".", "-")


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace(".", "_").split("_"))


def _version() -> str:
    try:
        return version("expertmatch")
    except PackageNotFoundError:
        return "0.0.0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.asyncapi", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is not what the models say")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT} is out of date: run `python -m shared.asyncapi`", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
