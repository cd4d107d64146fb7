"""What the matcher keeps of a post event: its contribution to the index, and the question a match names."""

from __future__ import annotations

from collections.abc import Sequence

from services.matcher.index.base import Contribution
from shared.events import Post, Question
from shared.text import snippet, to_plain_text


def plain_body(post: Post) -> str:
    return to_plain_text(post.body)


def contribution_of(
    post: Post, thread_title: str | None, vector: Sequence[float], thread_tags: tuple[str, ...]
) -> Contribution:
    return Contribution(
        tenant=post.tenant,
        post_id=post.id,
        thread_id=post.thread_id,
        author_id=post.author_id,
        kind=post.kind,
        # Replies carry their thread's title, so their evidence says what it was about.
        title=post.title or thread_title,
        text=plain_body(post),
        created_at=post.created_at,
        vector=list(vector),
        # Replies carry their thread's tags, so a person's answers say which topics they cover.
        tags=post.tags or thread_tags,
        audience=post.audience,
        accepted=post.accepted,
        score=post.score,
        url=post.url,
    )


def question_of(post: Post) -> Question:
    return Question(
        post_id=post.id,
        thread_id=post.thread_id,
        author_id=post.author_id,
        title=post.title,
        excerpt=snippet(plain_body(post)),
        url=post.url,
        tags=post.tags,
        created_at=post.created_at,
    )
