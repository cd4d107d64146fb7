"""The hit cache keeps nothing a write may have changed, and only so many hits; Hit.at keeps the rest."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime

from services.matcher.index.base import Hit
from services.matcher.index.hit_cache import HitCache
from shared.events import PostKind


def hit(post_id: str, title: str = "T") -> Hit:
    return Hit(
        post_id=post_id, thread_id="t", author_id="ann", kind=PostKind.ANSWER, title=title, text="",
        created_at=datetime(2024, 1, 1, tzinfo=UTC), similarity=0.0,
    )


def test_a_read_that_overlapped_a_write_keeps_nothing():
    cache = HitCache()
    generation = cache.generation
    cache.forget(["p1"])  # a write of p1 while the read was under way
    cache.keep(generation, {"p1": hit("p1", "old")})

    assert cache.get("p1") is None
    cache.keep(cache.generation, {"p1": hit("p1", "new")})
    assert cache.get("p1") == hit("p1", "new")


def test_writes_forget_their_points_and_an_erasure_forgets_all():
    cache = HitCache()
    cache.keep(cache.generation, {"p1": hit("p1"), "p2": hit("p2"), "p3": hit("p3")})

    cache.forget(["p2"])
    assert [cache.get(p) is not None for p in ("p1", "p2", "p3")] == [True, False, True]
    cache.clear()
    assert len(cache) == 0


def test_the_least_recently_used_go_first():
    cache = HitCache(size=2)
    cache.keep(cache.generation, {"p1": hit("p1"), "p2": hit("p2")})
    cache.get("p1")
    cache.keep(cache.generation, {"p3": hit("p3")})

    assert [cache.get(p) is not None for p in ("p1", "p2", "p3")] == [True, False, True]


def test_a_hit_at_another_similarity_is_the_same_hit_otherwise():
    every_field = dict(
        post_id="p", thread_id="t", author_id="ann", kind=PostKind.QUESTION, title="T", text="words",
        created_at=datetime(2024, 1, 1, tzinfo=UTC), similarity=0.25, tags=("a",), accepted=True, score=3,
        url="https://intranet/p",
    )
    found = Hit(**every_field)

    # A field added to Hit must be set here, and carried by Hit.at.
    assert set(every_field) == {f.name for f in fields(Hit)}
    assert found.at(0.75) == replace(found, similarity=0.75)
