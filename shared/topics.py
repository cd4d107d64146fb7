"""Topic names and their definitions (partitions, retention, dead-letter topics) from deploy/topics.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

POSTS = "posts"
# Posts flagged backfill (imports, the demo corpus): a lane of their own that the matcher reads
# only while live posts leave it idle, so an import never delays a live question.
BACKFILL = "posts.backfill"
MATCHES = "matches"
RESPONSES = "responses"
DLQ_SUFFIX = ".dlq"

DEFAULT_TOPICS_FILE = Path(__file__).resolve().parents[1] / "deploy" / "topics.json"


def dlq(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    # The consumer groups that read it (names under the prefix): a producer's outbox keeps an
    # event until all of them have committed past it (shared/outbox.py).
    consumers: tuple[str, ...] = ()


def load_topic_specs(path: Path = DEFAULT_TOPICS_FILE, *, prefix: str = "") -> list[TopicSpec]:
    """Every topic in the file, its dead-letter topic included, with names under `prefix`."""
    doc = json.loads(path.read_text())
    dlq_defaults = doc["dlq"]
    specs: list[TopicSpec] = []
    for topic in doc["topics"]:
        name = prefix + topic["name"]
        consumers = tuple(prefix + group for group in topic.get("consumers", ()))
        specs.append(TopicSpec(name, topic["partitions"], topic["retention_ms"], consumers))
        if topic.get("dlq"):
            specs.append(TopicSpec(dlq(name), dlq_defaults["partitions"], dlq_defaults["retention_ms"]))
    return specs
