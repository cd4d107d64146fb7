"""Small events for tests of the plumbing (loops, outbox), where what a post says does not matter."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import Post, PostKind, PostUpserted


def answer_event(n: int, *, threads: int = 3) -> PostUpserted:
    """Answer `p{n}` of tenant acme, in one of `threads` threads."""
    return PostUpserted(
        tenant="acme",
        data=Post(
            id=f"p{n}", tenant="acme", thread_id=f"t{n % threads}", author_id="u1",
            kind=PostKind.ANSWER, body=f"body {n}", created_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    )
