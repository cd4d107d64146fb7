"""Tests own their topics as `expertmatch topics` owns them in compose, and check a broker against the file."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.kafka import ensure_topics
from shared.settings import CommonSettings

TOPICS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "topics.json"


def create_topics(bootstrap_servers: str, prefix: str = "") -> list[str]:
    """Every topic of deploy/topics.json under `prefix`; callable with or without a running loop."""
    settings = CommonSettings(kafka_bootstrap_servers=bootstrap_servers, kafka_topic_prefix=prefix)
    # Its own thread and loop: the caller may be a coroutine's fixture or plain code.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, ensure_topics(settings)).result()


def expected_partitions(prefix: str = "") -> dict[str, int]:
    """Every topic and its dead-letter topic under `prefix`, with its partition count, read straight from the file."""
    doc = json.loads(TOPICS_FILE.read_text())
    expected = {}
    for topic in doc["topics"]:
        expected[prefix + topic["name"]] = topic["partitions"]
        if topic.get("dlq"):
            expected[prefix + topic["name"] + ".dlq"] = doc["dlq"]["partitions"]
    return expected
