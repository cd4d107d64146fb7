"""Reads a Stack Exchange dump's Posts.xml (plain or gzip) into expertmatch posts.

Tolerates what real dumps hold: HTML bodies, deleted owners (no OwnerUserId), missing
CreationDate (Ids are assigned in creation order, so posts are ordered by Id then), empty bodies,
unknown attributes. Serves `expertmatch import`, `expertmatch eval` and the benchmarks.
"""

from __future__ import annotations

import gzip
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

QUESTION, ANSWER = "1", "2"
_TAG = re.compile(r"<([^<>]+)>|\|([^|]+)")
# Where a dump has no dates, Ids stand in for time: one post a minute from this moment.
_SYNTHETIC_EPOCH = datetime(2015, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class DumpPost:
    id: str
    kind: str  # "question" or "answer"
    thread_id: str
    author_id: str
    title: str | None
    body: str  # as in the dump: HTML or plain text
    tags: tuple[str, ...]
    created_at: datetime
    score: int
    accepted: bool  # an answer its question accepted
    accepted_answer_id: str | None  # on questions


@dataclass
class DumpRead:
    posts: list[DumpPost]
    skipped: Counter = field(default_factory=Counter)
    has_dates: bool = True


def parse_tags(raw: str) -> tuple[str, ...]:
    """`<a><b>` (older dumps) or `|a|b|` (newer ones) -> ("a", "b")."""
    return tuple(a or b for a, b in _TAG.findall(raw or "") if (a or b))


def _parse_date(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _rows(path: Path) -> Iterator[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        for _, element in ET.iterparse(stream, events=("end",)):
            if element.tag == "row":
                yield dict(element.attrib)
            element.clear()


def read_dump(path: str | Path) -> DumpRead:
    """Every question and answer with a known author, in time order (by Id where dates are missing)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no dump at {path}")
    skipped: Counter = Counter()
    rows = []
    for row in _rows(path):
        kind = row.get("PostTypeId")
        if kind not in (QUESTION, ANSWER):
            skipped["not a question or answer"] += 1
            continue
        if not row.get("Id", "").isdigit():
            skipped["no numeric Id"] += 1
            continue
        if not row.get("OwnerUserId"):
            skipped["no owner (deleted user)"] += 1
            continue
        if kind == ANSWER and not row.get("ParentId"):
            skipped["answer without ParentId"] += 1
            continue
        rows.append(row)
    accepted_ids = {row["AcceptedAnswerId"] for row in rows if row.get("AcceptedAnswerId")}
    question_ids = {row["Id"] for row in rows if row["PostTypeId"] == QUESTION}
    has_dates = all(row.get("CreationDate") for row in rows)
    posts = []
    for row in rows:
        is_question = row["PostTypeId"] == QUESTION
        thread_id = row["Id"] if is_question else row["ParentId"]
        if not is_question and thread_id not in question_ids:
            skipped["answer to a question not in the dump"] += 1
            continue
        created = _parse_date(row.get("CreationDate")) if has_dates else None
        posts.append(
            DumpPost(
                id=row["Id"],
                kind="question" if is_question else "answer",
                thread_id=thread_id,
                author_id=row["OwnerUserId"],
                title=row.get("Title") if is_question else None,
                body=row.get("Body") or "",
                tags=parse_tags(row.get("Tags", "")),
                created_at=created or _SYNTHETIC_EPOCH + timedelta(minutes=int(row["Id"])),
                score=int(row.get("Score") or 0),
                accepted=not is_question and row["Id"] in accepted_ids,
                accepted_answer_id=row.get("AcceptedAnswerId") if is_question else None,
            )
        )
    posts.sort(key=lambda post: (post.created_at, int(post.id)))
    return DumpRead(posts=posts, skipped=skipped, has_dates=has_dates)
