"""Tests own their topics as `expertmatch topics` owns them in compose: created before any service starts."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from shared.kafka import ensure_topics
from shared.settings import CommonSettings


def create_topics(bootstrap_servers: str, prefix: str = "") -> list[str]:
    """Every topic of deploy/topics.json under `prefix`; callable with or without a running loop."""
    settings = CommonSettings(kafka_bootstrap_servers=bootstrap_servers, kafka_topic_prefix=prefix)
    # Its own thread and loop: the caller may be a coroutine's fixture or plain code.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, ensure_topics(settings)).result()
