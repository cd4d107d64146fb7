"""What deploy/topics.json asks of a broker, read straight from the file, to check a broker against."""

from __future__ import annotations

import json
from pathlib import Path

TOPICS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "topics.json"


def expected_partitions(prefix: str = "") -> dict[str, int]:
    """Every topic and its dead-letter topic under `prefix`, with its partition count."""
    doc = json.loads(TOPICS_FILE.read_text())
    expected = {}
    for topic in doc["topics"]:
        expected[prefix + topic["name"]] = topic["partitions"]
        if topic.get("dlq"):
            expected[prefix + topic["name"] + ".dlq"] = doc["dlq"]["partitions"]
    return expected
