"""`expertmatch import`: a Stack Exchange dump sent to the ingest batch API as backfill.

Post ids are the dump's, so a rerun resends the same posts and the matcher overwrites them.
Ingest refuses empty bodies; an answer with no text (some dumps keep none) is sent with its
thread's title as its body, so who answered what still counts as expertise, as `eval` counts it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

from services.ingest.settings import IngestSettings
from shared.stackexchange import DumpPost, read_dump
from shared.text import to_plain_text
from shared.topics import BACKFILL

BATCH_PATH = "/v1/posts/batch"
# The matcher's answer to "how many of these posts are indexed", asked of this many posts at a time.
COUNT_PATH = "/v1/index/posts/count"
COUNT_CHUNK = 1000
# Chunks asked about per round: the matcher indexes roughly in the order posts were sent.
LOOKAHEAD = 10
# Waits between attempts of a batch the ingest answered 503 (its broker is away).
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0)
MAX_BODY_BYTES = IngestSettings.model_fields["max_body_bytes"].default
MAX_TITLE_CHARS = 500


class ImportFailed(Exception):
    """The ingest refused the import for good (bad key, invalid posts, or still unavailable)."""


@dataclass
class ImportSummary:
    sent: int = 0
    # Every distinct post id sent, in the order sent: what `wait_indexed` follows.
    post_ids: list[str] = field(default_factory=list)
    titled: int = 0  # posts with no text, sent with their thread's title as the body
    skipped: Counter = field(default_factory=Counter)

    def describe(self) -> str:
        lines = [f"sent {self.sent} posts as backfill"]
        if self.titled:
            lines.append(f"  {self.titled} had no text and were sent with their thread's title as the body")
        for reason, count in self.skipped.most_common():
            lines.append(f"  skipped {count}: {reason}")
        return "\n".join(lines)


def to_payload(post: DumpPost, thread_title: str | None) -> tuple[dict | None, str | None]:
    """The ingest's PostIn for a dump post, or None and the reason it cannot be sent."""
    body = post.body
    if not to_plain_text(body):
        if not thread_title:
            return None, "no text and no thread title"
        body = thread_title
    if len(body.encode()) > MAX_BODY_BYTES:
        return None, f"body over the ingest's {MAX_BODY_BYTES} bytes"
    title = (post.title or "").strip()[:MAX_TITLE_CHARS] or None
    payload = {
        "id": post.id,
        "thread_id": post.thread_id,
        "author_id": post.author_id,
        "kind": post.kind,
        "title": title,
        "body": body,
        "tags": list(dict.fromkeys(post.tags))[:20],
        "created_at": post.created_at.isoformat(),
        "accepted": post.accepted,
        "score": post.score,
        "backfill": True,
    }
    return payload, None


def _batches(items: Sequence[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


async def send_batch(
    client: httpx.AsyncClient, posts: list[dict], *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> None:
    """POST one batch; waits and retries while the ingest answers 503, fails clearly otherwise."""
    for delay in (*RETRY_DELAYS, None):
        try:
            response = await client.post(BATCH_PATH, json={"posts": posts})
        except httpx.TransportError as exc:
            if delay is None:
                raise ImportFailed(f"cannot reach the ingest at {client.base_url}: {exc!r}") from exc
            await sleep(delay)
            continue
        if response.status_code == 202:
            return
        if response.status_code == 503 and delay is not None:
            await sleep(max(delay, _retry_after(response)))
            continue
        raise ImportFailed(_failure(response, posts))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("retry-after", 0))
    except ValueError:
        return 0.0


def _failure(response: httpx.Response, posts: list[dict]) -> str:
    first, last = posts[0]["id"], posts[-1]["id"]
    if response.status_code == 401:
        return "the ingest refused the API key (401): check --key"
    if response.status_code == 503:
        return (
            f"the ingest stayed unavailable (503) for posts {first}..{last}; rerun later, sent posts are safe to resend"
        )
    return f"the ingest answered {response.status_code} for posts {first}..{last}: {response.text[:2000]}"


async def import_dump(
    path: Path,
    *,
    api: str | None = None,
    key: str,
    batch: int = 500,
    client: httpx.AsyncClient | None = None,
    show_progress: bool = True,
) -> ImportSummary:
    """Send every post of the dump at `path`, in time order, to the ingest at `api` (or `client`)."""
    read = read_dump(path)
    summary = ImportSummary(skipped=Counter(read.skipped))
    titles = {p.thread_id: (p.title or "").strip() or None for p in read.posts if p.kind == "question"}
    payloads = []
    for post in read.posts:
        payload, reason = to_payload(post, titles.get(post.thread_id))
        if payload is None:
            summary.skipped[reason] += 1
            continue
        summary.titled += payload["body"] != post.body
        payloads.append(payload)
    headers = {"Authorization": f"Bearer {key}"}
    own_client = client is None
    http = client or httpx.AsyncClient(base_url=api or "", timeout=60.0)
    http.headers.update(headers)
    try:
        with tqdm(total=len(payloads), desc="import", unit="post", disable=not show_progress) as bar:
            for posts in _batches(payloads, batch):
                await send_batch(http, posts)
                summary.sent += len(posts)
                bar.update(len(posts))
        summary.post_ids = list(dict.fromkeys(p["id"] for p in payloads))
    finally:
        if own_client:
            await http.aclose()
    return summary


async def wait_indexed(
    client: httpx.AsyncClient,
    post_ids: Sequence[str],
    *,
    stall: float,
    poll: float = 2.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    show_progress: bool = True,
) -> int:
    """Follow the matcher at `client` until it holds every one of `post_ids`; returns how many it holds.

    Raises ImportFailed when `stall` seconds pass with no post more indexed: the matcher is down,
    or it set the rest aside as dead letters.
    """
    chunks = [list(post_ids[start : start + COUNT_CHUNK]) for start in range(0, len(post_ids), COUNT_CHUNK)]
    found = [0] * len(chunks)
    first = 0  # the first chunk not wholly indexed yet
    shown = 0  # a disabled bar keeps no count of its own
    progressed = clock()
    with tqdm(total=len(post_ids), desc="indexed", unit="post", disable=not show_progress) as bar:
        while True:
            for n in range(first, min(first + LOOKAHEAD, len(chunks))):
                counted = await _count(client, chunks[n])
                if counted is not None:  # unavailable: asked again next round
                    found[n] = counted
            while first < len(chunks) and found[first] == len(chunks[first]):
                first += 1
            indexed = sum(found)
            if indexed > shown:
                bar.update(indexed - shown)
                shown, progressed = indexed, clock()
            if first == len(chunks):
                return indexed
            if clock() - progressed > stall:
                raise ImportFailed(
                    f"the matcher has indexed {indexed} of the {len(post_ids)} posts sent, and no more for "
                    f"{stall:g} s: see `expertmatch lag`, and `expertmatch dlq list {BACKFILL}` for posts it set "
                    "aside; the posts are safe to import again"
                )
            await sleep(poll)


async def _count(client: httpx.AsyncClient, post_ids: list[str]) -> int | None:
    """How many of `post_ids` the matcher holds; None while it cannot say (down, or its index away)."""
    try:
        response = await client.post(COUNT_PATH, json={"post_ids": post_ids})
    except httpx.TransportError:
        return None
    if response.status_code == 200:
        return response.json()["indexed"]
    if response.status_code == 503:
        return None
    if response.status_code == 401:
        raise ImportFailed("the matcher refused the API key (401): check --key and --matcher")
    raise ImportFailed(f"the matcher answered {response.status_code}: {response.text[:2000]}")
