"""The shipped demo corpus is coherent: people, threads and demo questions fit together."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from services.demo.corpus import load_corpus, post_payload
from services.ingest.schemas import PostIn

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def test_a_company_of_about_thirty_people_in_several_teams(corpus):
    assert 25 <= len(corpus.people) <= 40
    teams = {team.id for team in corpus.teams}
    assert len(teams) >= 7
    assert {person.team for person in corpus.people} <= teams
    assert len({person.id for person in corpus.people}) == len(corpus.people)


def test_hundreds_of_posts_all_by_known_people(corpus):
    people = {person.id for person in corpus.people}
    assert len(corpus.posts) >= 300
    assert {post.author_id for post in corpus.posts} <= people
    assert len({post.id for post in corpus.posts}) == len(corpus.posts)


def test_every_reply_belongs_to_a_thread_with_a_titled_question(corpus):
    roots = Counter(post.thread_id for post in corpus.posts if post.kind == "question")
    assert all(count == 1 for count in roots.values())
    for post in corpus.posts:
        assert post.thread_id in roots, f"{post.id} replies to a thread that has no question"
        if post.kind == "question":
            assert post.title
    accepted = Counter(post.thread_id for post in corpus.posts if post.accepted)
    assert accepted and all(count == 1 for count in accepted.values())
    assert all(post.kind == "answer" for post in corpus.posts if post.accepted)


def test_the_corpus_has_the_variety_the_demo_relies_on(corpus):
    kinds = Counter(post.kind for post in corpus.posts)
    assert kinds["answer"] >= 80 and kinds["comment"] >= 50
    assert sum("<p>" in post.body for post in corpus.posts) >= 10
    assert sum(post.audience != ["public"] for post in corpus.posts) >= 10
    dates = [post.created_at for post in corpus.posts]
    assert max(dates) - min(dates) > timedelta(days=365)


def test_every_demo_question_has_experts_who_answered_in_their_area(corpus):
    people = {person.id for person in corpus.people}
    answerers = Counter(post.author_id for post in corpus.posts if post.kind == "answer")
    assert len(corpus.demo_questions) >= 3
    for question in corpus.demo_questions:
        assert question.author_id in people
        assert question.author_id not in question.expected_experts
        assert set(question.expected_experts) <= people
        assert answerers[question.expected_experts[0]] >= 3


def test_backfill_is_dated_up_to_yesterday_and_validates_as_the_api_does(corpus):
    now = datetime(2030, 1, 1, tzinfo=UTC)

    posts = corpus.backfill_as_of(now)

    assert max(post.created_at for post in posts) == now - timedelta(days=1)
    assert all(post.backfill for post in posts)
    # What the runner sends must pass the ingest API's own validation.
    payload = post_payload(posts[0])
    assert "tenant" not in payload
    assert PostIn.model_validate(payload).id == posts[0].id
