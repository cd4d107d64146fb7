"""The demo: subscribe the receiver, load the corpus as backfill, wait for the index, ask questions."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx

from services.demo.corpus import DemoCorpus, post_payload
from services.embedded.console import say

RECEIVER_DESCRIPTION = "expertmatch run: demo receiver"
BATCH = 500


async def subscribe(http: httpx.AsyncClient, notifier_url: str, receiver_url: str) -> str:
    """Replace earlier runs' receivers (their ports are gone) with this one; returns its secret."""
    listed = await http.get(f"{notifier_url}/v1/subscriptions")
    listed.raise_for_status()
    for old in listed.json():
        if old.get("description") == RECEIVER_DESCRIPTION:
            await http.delete(f"{notifier_url}/v1/subscriptions/{old['id']}")
    created = await http.post(
        f"{notifier_url}/v1/subscriptions", json={"url": receiver_url, "description": RECEIVER_DESCRIPTION}
    )
    created.raise_for_status()
    return created.json()["secret"]


async def load_backfill(http: httpx.AsyncClient, ingest_url: str, corpus: DemoCorpus) -> int:
    """Send the corpus through the ingest API, flagged backfill so it invites nobody."""
    posts = [post_payload(post) for post in corpus.backfill_as_of(datetime.now(UTC))]
    for start in range(0, len(posts), BATCH):
        response = await http.post(f"{ingest_url}/v1/posts/batch", json={"posts": posts[start : start + BATCH]})
        response.raise_for_status()
    return len(posts)


async def wait_indexed(http: httpx.AsyncClient, matcher_url: str, expected: int, timeout: float) -> int:
    """Poll the matcher's count for our tenant until it holds `expected` contributions."""
    deadline = time.monotonic() + timeout
    last_report = 0.0
    count = 0
    while time.monotonic() < deadline:
        response = await http.get(f"{matcher_url}/v1/index/stats")
        if response.status_code == 200:
            count = response.json()["contributions"]
            if count >= expected:
                return count
        if time.monotonic() - last_report > 10:
            say(f"indexing the demo corpus: {count}/{expected} contributions")
            last_report = time.monotonic()
        await asyncio.sleep(1)
    return count


async def wait_learned(http: httpx.AsyncClient, matcher_url: str, timeout: float) -> int:
    """Poll until the tenant's ranking has learned from its past questions; how many (0: still the fusion)."""
    deadline = time.monotonic() + timeout
    learned = 0
    while time.monotonic() < deadline:
        response = await http.get(f"{matcher_url}/v1/index/stats")
        if response.status_code == 200 and (learned := response.json().get("learned_from", 0)):
            return learned
        await asyncio.sleep(1)
    return learned


async def ask_demo_questions(http: httpx.AsyncClient, ingest_url: str, corpus: DemoCorpus) -> None:
    """Post the demo questions as new threads (ids unique per run, so every run invites again)."""
    run = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    for question in corpus.demo_questions:
        thread_id = f"{question.id}-{run}"
        post = {
            "id": f"{thread_id}-q",
            "thread_id": thread_id,
            "author_id": question.author_id,
            "kind": "question",
            "title": question.title,
            "body": question.body,
            "tags": question.tags,
            "url": f"{corpus.company.intranet}/t/{thread_id}",
        }
        response = await http.post(f"{ingest_url}/v1/posts", json=post)
        response.raise_for_status()
        asker = corpus.person(question.author_id)
        experts = ", ".join(p.name for p in map(corpus.person, question.expected_experts) if p)
        say(f"asked \"{question.title}\" as {asker.name if asker else question.author_id}\n"
            f"    the corpus says the people to ask are: {experts}")
