"""Post titles and bodies arrive as plain text or HTML; the index, the evidence and webhooks hold plain text."""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser as HTMLParser

_TAG_HINT = re.compile(r"<[a-zA-Z/!][^>]*>|&[a-zA-Z#0-9]+;")
_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_BLOCKS = "p,div,li,pre,blockquote,h1,h2,h3,h4,h5,h6,tr,br,hr"


def to_plain_text(body: str) -> str:
    """HTML to readable text (scripts and styles dropped, blocks on their own lines); text stays."""
    if not _TAG_HINT.search(body):
        return _tidy(body)
    tree = HTMLParser(body)
    for node in tree.css("script,style"):
        node.decompose()
    for node in tree.css(_BLOCKS):
        node.insert_after("\n")
    root = tree.body or tree.root
    text = root.text(separator="", deep=True) if root is not None else ""
    return _tidy(text)


def to_plain_line(text: str) -> str:
    """A title as one line of plain text: HTML stripped as from a body, white space collapsed."""
    return " ".join(to_plain_text(text).split())


def _tidy(text: str) -> str:
    text = _SPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def snippet(text: str, limit: int = 280) -> str:
    """The start of a text cut at a word, for evidence and invitations."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    return cut + "…"
