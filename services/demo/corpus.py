"""Loads the demo corpus (package data) and dates it relative to today."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from importlib import resources

from pydantic import BaseModel, ConfigDict

from services.ingest.schemas import PostIn


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Company(_Model):
    name: str
    description: str
    intranet: str


class Team(_Model):
    id: str
    name: str
    description: str


class Person(_Model):
    id: str
    name: str
    team: str
    role: str


class DemoQuestion(_Model):
    """A new question whose right experts are obvious from the corpus."""

    id: str
    author_id: str
    title: str
    body: str
    tags: list[str]
    expected_experts: list[str]
    # The past thread this question asks again: its answerers are the ones to ask first.
    matching_thread: str
    # Past threads on the question's topic: whoever is invited has answered one of them.
    on_topic_threads: list[str]


class DemoCorpus(_Model):
    company: Company
    teams: list[Team]
    people: list[Person]
    posts: list[PostIn]
    demo_questions: list[DemoQuestion]
    # The question `make run` suggests to post by hand.
    try_question: DemoQuestion

    def person(self, person_id: str) -> Person | None:
        return next((p for p in self.people if p.id == person_id), None)

    def backfill_as_of(self, now: datetime) -> list[PostIn]:
        """Every post flagged backfill, shifted so the newest is a day old (recency stays meaningful)."""
        newest = max(post.created_at for post in self.posts if post.created_at is not None)
        shift = (now - timedelta(days=1)) - newest
        return [
            post.model_copy(update={"created_at": post.created_at + shift, "backfill": True})
            for post in self.posts
        ]


def load_corpus() -> DemoCorpus:
    """The corpus from the installed package (corpus.json beside this module)."""
    raw = resources.files("services.demo").joinpath("corpus.json").read_text(encoding="utf-8")
    return DemoCorpus.model_validate(json.loads(raw))


def post_payload(post: PostIn) -> dict:
    """A post as the ingest API's JSON body."""
    return post.model_dump(mode="json", exclude={"tenant"}, exclude_none=True)
