"""What the matcher embeds for a post, and whose posts a question's readers may see."""

from __future__ import annotations

from collections.abc import Sequence

# The model reads 256 word pieces (~1,000-1,500 characters of English); the rest is cut anyway.
MAX_TEXT_CHARS = 2000


def contribution_text(title: str | None, body: str) -> str:
    """What gets embedded: the (thread) title first, so truncation never drops the topic."""
    text = f"{title}\n{body}" if title else body
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return text[:MAX_TEXT_CHARS].rsplit(" ", 1)[0]


def visible_to(audience: Sequence[str]) -> list[str]:
    """Evidence a question's readers may see: public posts and posts to the question's audience."""
    return sorted({"public", *audience})
