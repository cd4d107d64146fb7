"""The matcher's batch handler and search, with an in-memory index, a fake embedder and a publish list."""

from __future__ import annotations

import itertools
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from services.matcher.consumer import index_unavailable
from services.matcher.index.base import IndexUnavailable
from services.matcher.service import MatcherService, RankingPolicy
from services.matcher.texts import MAX_TEXT_CHARS, contribution_text
from shared.events import (
    ExpertsMatched,
    InvitationResponded,
    InvitationResponse,
    PersonErased,
    PersonRef,
    Post,
    PostDeleted,
    PostKind,
    PostRef,
    PostUpserted,
    ResponseKind,
)
from shared.logs import JsonFormatter
from tests.fakes import FakeEmbedder, InMemoryIndex

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
_ids = itertools.count()


def post(author: str, kind: PostKind, body: str, *, thread: str, title: str | None = None, tenant: str = "acme",
         backfill: bool = False, audience: tuple[str, ...] = ("public",), post_id: str | None = None,
         url: str | None = None) -> PostUpserted:
    data = Post(
        id=post_id or f"p{next(_ids)}",
        tenant=tenant,
        thread_id=thread,
        author_id=author,
        kind=kind,
        title=title,
        body=body,
        audience=audience,
        created_at=NOW - timedelta(days=30),
        backfill=backfill,
        url=url,
    )
    return PostUpserted(tenant=tenant, data=data)


def question(author, title, body, *, thread, **kw):
    return post(author, PostKind.QUESTION, body, thread=thread, title=title, **kw)


def answer(author, body, *, thread, **kw):
    return post(author, PostKind.ANSWER, body, thread=thread, **kw)


def batch(*events) -> list:
    return list(events)


class Published(list):
    async def __call__(self, events) -> None:
        self.extend(events)


@pytest.fixture
def index():
    return InMemoryIndex()


@pytest.fixture
def embedder():
    return FakeEmbedder()


@pytest.fixture
def published():
    return Published()


@pytest.fixture
def service(index, embedder, published):
    return MatcherService(index=index, embedder=embedder, publish=published, clock=lambda: NOW)


HISTORY = (
    question(
        "carol", "Kubernetes pods restart", "pods keep restarting with CrashLoopBackOff", thread="k1", backfill=True
    ),
    answer("kim", "check the liveness probe of the kubernetes pods and the container logs", thread="k1", backfill=True),
    question("dave", "Kubernetes ingress", "ingress returns 502 for my kubernetes service", thread="k2", backfill=True),
    answer("kim", "the kubernetes service port does not match the pods container port", thread="k2", backfill=True),
    answer("pat", "the payroll export runs on the first of the month", thread="pay1", backfill=True),
)


async def test_backfill_is_indexed_in_one_embed_call_and_starts_no_match(service, index, embedder, published):
    await service.handle(batch(*HISTORY))
    assert await index.count("acme") == len(HISTORY)
    assert len(embedder.calls) == 1 and len(embedder.calls[0]) == len(HISTORY)
    assert published == []


async def test_with_a_pause_a_batch_is_embedded_in_calls_of_similar_length_each_post_keeping_its_vector(
    index, embedder, published
):
    service = MatcherService(index=index, embedder=embedder, publish=published, clock=lambda: NOW, embed_batch=2)
    paused = []

    async def pause() -> None:
        paused.append(len(embedder.calls))

    await service.handle(batch(*HISTORY), pause=pause)
    sizes = [len(call) for call in embedder.calls]
    # A pause between two calls, none before the first; then between two writes of the posts.
    assert sizes == [2, 2, 1] and paused == [1, 2, 3, 3]
    lengths = [n for call in embedder.calls for n in await embedder.lengths(call)]
    assert lengths == sorted(lengths)
    titles = {e.data.thread_id: e.data.title for e in HISTORY if e.data.title}
    for event in HISTORY:
        text = contribution_text(titles.get(event.data.thread_id), event.data.body)
        assert await index.vector("acme", event.data.id) == embedder.vector(text), "each post keeps its own vector"


async def test_with_a_pause_texts_are_grouped_by_their_length_to_the_model_not_in_characters(
    index, embedder, published
):
    service = MatcherService(index=index, embedder=embedder, publish=published, clock=lambda: NOW, embed_batch=1)

    async def pause() -> None:
        pass

    many_short_words = answer("kim", "a b c d e f g h", thread="t1", backfill=True)
    one_long_word = answer("pat", "incomprehensibilities", thread="t2", backfill=True)
    await service.handle([many_short_words, one_long_word], pause=pause)

    # The fake model counts words, as a tokenizer counts tokens: the one long word comes first.
    assert [await embedder.lengths(call) for call in embedder.calls] == [[1], [8]]


async def test_with_a_pause_looking_up_thread_titles_pauses_too(index, embedder, published):
    service = MatcherService(index=index, embedder=embedder, publish=published, clock=lambda: NOW, embed_batch=2)
    paused = []

    async def pause() -> None:
        paused.append(1)

    replies = [answer("kim", f"reply {n}", thread=f"elsewhere{n}", backfill=True) for n in range(5)]
    await service.handle(replies, pause=pause)
    # Five look-ups of titles, five texts embedded, five posts written, each in runs of two: two pauses each.
    assert len(paused) == 6 and await index.count("acme") == 5


async def test_with_a_pause_posts_are_written_a_few_at_a_time_and_a_live_batch_may_go_between(
    index, embedder, published
):
    service = MatcherService(index=index, embedder=embedder, publish=published, clock=lambda: NOW, embed_batch=2)
    imported = [answer("kim", f"import {n}", thread=f"t{n}", backfill=True) for n in range(5)]
    written_before_live = []

    async def pause() -> None:
        # The matcher's import lane lets a live batch in here: its question ranks on what is written so far.
        if len(embedder.calls) == 3 and not written_before_live:
            written_before_live.append(await index.count("acme"))
            await service.handle([question("ana", "Live?", "a live question", thread="live")])

    await service.handle(imported, pause=pause)
    assert written_before_live == [2], "the live batch went in after the first write of two posts"
    assert await index.count("acme") == 6 and len(published) == 1


async def test_a_new_question_is_matched_with_the_expert_first(service, published):
    await service.handle(batch(*HISTORY))
    await service.handle(
        batch(question("erin", "Kubernetes pods", "my kubernetes pods restart, what to check?", thread="k3"))
    )
    [match] = published
    assert isinstance(match, ExpertsMatched) and match.tenant == "acme"
    assert match.data.question.thread_id == "k3" and match.data.question.author_id == "erin"
    assert match.data.candidates[0].person_id == "kim"
    assert match.data.candidates[0].evidence[0].thread_id in {"k1", "k2"}
    assert len(match.data.candidates[0].evidence) == 2


async def test_evidence_links_back_to_the_post_when_ingest_was_given_a_link(service, published):
    link = "https://intranet.example/t/k1#answer"
    await service.handle(batch(
        question("dana", "Pods crash", "kubernetes pods crash on deploy", thread="k1", backfill=True),
        answer("kim", "kubernetes pods crash when the liveness probe fails", thread="k1", url=link, backfill=True),
        answer("lee", "kubernetes pods restart when memory runs out", thread="k1", backfill=True),
    ))
    await service.handle(batch(question("erin", "Kubernetes pods", "my kubernetes pods crash", thread="k3")))

    [match] = published
    by_person = {c.person_id: c for c in match.data.candidates}
    assert [e.url for e in by_person["kim"].evidence] == [link]
    assert [e.url for e in by_person["lee"].evidence] == [None]  # none given, none made up


async def test_the_asker_and_thread_participants_are_never_candidates(service, published):
    await service.handle(batch(*HISTORY))
    # kim already answered in this thread before the question was (re)sent: kim is a participant.
    reply = answer("kim", "kubernetes pods again", thread="k4")
    ask = question("carol", "Kubernetes pods", "kubernetes pods restart again", thread="k4")
    await service.handle(batch(reply, ask))
    [match] = published
    people = {c.person_id for c in match.data.candidates}
    assert "carol" not in people and "kim" not in people
    assert set(match.data.participants) == {"carol", "kim"}
    assert people  # dave, who asked about kubernetes, is still found


async def test_a_reply_is_embedded_with_its_thread_title(service, index, embedder):
    await service.handle(batch(question("carol", "Kubernetes pods restart", "help", thread="k1")))
    await service.handle(batch(answer("kim", "check the probe", thread="k1")))
    assert embedder.calls[-1] == ["Kubernetes pods restart\ncheck the probe"]
    await service.handle(batch(answer("kim", "a reply in a thread nobody knows", thread="zz")))
    assert embedder.calls[-1] == ["a reply in a thread nobody knows"]


async def test_a_reply_takes_the_title_of_a_root_later_in_the_same_batch(service, embedder):
    reply = answer("kim", "check the probe", thread="k9")
    root = question("carol", "Pods restart", "help", thread="k9", backfill=True)
    await service.handle(batch(reply, root))
    assert embedder.calls[0][0] == "Pods restart\ncheck the probe"


async def test_evidence_respects_the_questions_audience(service, published):
    secret = answer(
        "sam", "kubernetes pods restart fix for the platform team", thread="s1", audience=("platform",), backfill=True
    )
    public = answer("pat", "kubernetes pods restart fix", thread="s2", backfill=True)
    await service.handle(batch(secret, public))
    await service.handle(batch(question("erin", "Kubernetes pods restart", "fix?", thread="q1")))
    await service.handle(
        batch(question("erin", "Kubernetes pods restart", "fix?", thread="q2", audience=("platform",)))
    )
    public_match, platform_match = published
    assert [c.person_id for c in public_match.data.candidates] == ["pat"]
    assert {c.person_id for c in platform_match.data.candidates} == {"sam", "pat"}


async def test_delete_and_erasure_apply_in_batch_order(service, index, published):
    first = answer("kim", "kubernetes pods", thread="k1", post_id="a1")
    deleted = PostDeleted(tenant="acme", data=PostRef(post_id="a1", thread_id="k1"))
    again = answer("kim", "kubernetes pods", thread="k1", post_id="a1")
    await service.handle(batch(first, deleted, again))
    assert await index.count("acme") == 1
    erased = PersonErased(tenant="acme", data=PersonRef(person_id="kim"))
    ask = question("kim", "Kubernetes", "kubernetes pods?", thread="k5")
    await service.handle(batch(ask, erased))
    assert await index.count("acme") == 0
    assert published == []  # the erased person's question is gone before it is matched


async def test_replaying_a_batch_republishes_the_same_match(service, index, published):
    events = batch(*HISTORY, question("erin", "Kubernetes pods", "kubernetes pods restart", thread="k3"))
    await service.handle(events)
    await service.handle(events)
    assert await index.count("acme") == len(HISTORY) + 1
    assert len(published) == 2 and published[0].id == published[1].id
    assert published[0].data == published[1].data


async def test_tenants_never_see_each_others_people(service, published):
    await service.handle(batch(*HISTORY))
    await service.handle(
        batch(question("gil", "Kubernetes pods", "kubernetes pods restart", thread="g1", tenant="globex"))
    )
    [match] = published
    assert match.tenant == "globex" and match.data.candidates == ()


async def test_an_envelope_naming_another_tenant_than_its_post_is_refused(service, index):
    forged = PostUpserted(tenant="globex", data=answer("kim", "x", thread="k1").data)
    with pytest.raises(ValueError, match="tenant"):
        await service.handle(batch(forged))
    assert await index.count("acme") == 0 and await index.count("globex") == 0


async def test_an_index_outage_is_the_matchers_own_error_which_its_consumers_retry(service, index):
    index.available = False
    with pytest.raises(IndexUnavailable) as raised:
        await service.handle(batch(*HISTORY))
    assert index_unavailable(raised.value), "the consumer wiring retries the batch, never dead-letters it"


async def test_search_ranks_the_tenants_people_and_honours_exclusions(service):
    await service.handle(batch(*HISTORY))
    experts = await service.search(tenant="acme", text="kubernetes pods restart", limit=5)
    assert experts[0].person_id == "kim"
    assert "kim" not in [
        e.person_id for e in await service.search(tenant="acme", text="kubernetes pods", limit=5, exclude=["kim"])
    ]
    assert await service.search(tenant="globex", text="kubernetes pods", limit=5) == []


async def test_people_beyond_the_hits_are_shown_by_their_own_nearest_visible_answers(index, embedder, published):
    """A person added for their recent answers has evidence and a closeness of their own; one with no
    visible post is never listed."""
    service = MatcherService(
        index=index, embedder=embedder, publish=published, clock=lambda: NOW,
        policy=RankingPolicy(search_depth=1, lexical_depth=0, tag_depth=0, recent_depth=10),
    )
    await service.handle(batch(
        answer("kim", "kubernetes pods restart check the liveness probe", thread="k1", backfill=True),
        answer("lee", "kubernetes ingress 502 means the service port is wrong", thread="k2", backfill=True),
        answer("sam", "kubernetes pods restart: platform runbook", thread="s1", audience=("platform",), backfill=True),
    ))

    experts = await service.search(tenant="acme", text="kubernetes pods restart liveness", limit=5)

    by_person = {c.person_id: c for c in experts}
    assert set(by_person) == {"kim", "lee"}
    assert by_person["kim"].closeness > by_person["lee"].closeness > 0
    assert [e.thread_id for e in by_person["lee"].evidence] == ["k2"]
    assert by_person["lee"].evidence[0].similarity == pytest.approx(by_person["lee"].closeness)


async def test_policy_limits_the_candidates(index, embedder, published):
    service = MatcherService(
        index=index, embedder=embedder, publish=published, policy=RankingPolicy(candidates=1), clock=lambda: NOW
    )
    await service.handle(batch(*HISTORY, question("erin", "Kubernetes pods", "kubernetes pods", thread="k3")))
    assert len(published[0].data.candidates) == 1


def test_long_texts_are_cut_at_a_word_and_keep_the_title():
    text = contribution_text("Kubernetes", "word " * 5000)
    assert text.startswith("Kubernetes\n") and len(text) <= MAX_TEXT_CHARS and text.endswith("word")


async def test_a_reply_carries_its_threads_tags_so_answers_count_towards_a_topic(service, index):
    root = post("carol", PostKind.QUESTION, "pods restart", thread="k1", title="Pods", backfill=True)
    root = PostUpserted(tenant="acme", data=root.data.model_copy(update={"tags": ("kubernetes",)}))
    await service.handle(batch(root))
    await service.handle(batch(answer("kim", "check the probe", thread="k1", backfill=True)))

    assert await index.author_counts("acme", kinds=[PostKind.ANSWER], tags_any=["kubernetes"]) == {"kim": 1}


async def test_tag_overlap_and_the_questions_words_rank_the_topic_expert_first(service, index, embedder):
    def tagged(event, *tags):
        return PostUpserted(tenant="acme", data=event.data.model_copy(update={"tags": tags}))

    await service.handle(batch(
        tagged(question("carol", "Deploys", "deploy fails", thread="d1", backfill=True), "ledgerd"),
        answer("kim", "restart the service after the deploy", thread="d1", backfill=True),
        tagged(question("dave", "Deploys", "deploy fails", thread="d2", backfill=True), "payroll"),
        answer("pat", "restart the service after the deploy", thread="d2", backfill=True),
    ))

    candidates = (await service.rank_question(
        tenant="acme", vector=embedder.vector("deploy fails again"), text="Deploy fails again", tags=("ledgerd",),
        asker="erin", thread_id="d3", audience=(), now=NOW, limit=5,
    )).candidates

    assert [c.person_id for c in candidates][:2] == ["kim", "pat"]
    assert candidates[0].parts["tags"] > 0
    assert candidates[0].evidence[0].thread_id == "d1"


def responded(
    person: str, kind: str, *, question_event: PostUpserted, at=NOW - timedelta(days=1)
) -> InvitationResponded:
    q = question_event.data
    return InvitationResponded(
        tenant=q.tenant,
        data=InvitationResponse(
            invitation_id=f"inv-{person}-{q.id}",
            thread_id=q.thread_id,
            person_id=person,
            response=ResponseKind(kind),
            question_post_id=q.id,
            question_title=q.title,
            responded_at=at,
        ),
    )


async def rank(service, embedder, text: str, *, asker: str = "zoe", thread: str = "new", now=NOW):
    candidates = (
        await service.rank_question(
            tenant="acme",
            vector=embedder.vector(text),
            text=text,
            asker=asker,
            thread_id=thread,
            audience=(),
            now=now,
            limit=5,
        )
    ).candidates
    return candidates


async def test_not_my_area_sinks_that_person_near_that_question_only(service, embedder):
    pods = question("erin", "Kubernetes pods", "kubernetes pods restart, what to check?", thread="k3")
    await service.handle(batch(*HISTORY, pods))
    close = "Kubernetes pods: they restart, what to check?"
    before_pods = await rank(service, embedder, close)
    before_payroll = await rank(service, embedder, "payroll export on the first of the month")
    assert before_pods[0].person_id == "kim" and "feedback" not in before_pods[0].parts

    await service.handle(batch(responded("kim", "not_my_area", question_event=pods)))

    after_pods = await rank(service, embedder, close)
    assert after_pods[0].person_id != "kim"
    ranked = [c.person_id for c in after_pods]
    # On a question this close, the clear expert sinks to the bottom of the pool.
    assert "kim" not in ranked or ranked[-1] == "kim"
    # Their track record says so, for the notifier to act on whatever else is there to invite.
    [kim] = [c for c in after_pods if c.person_id == "kim"]
    assert (kim.track_record.not_my_area_nearby, kim.track_record.answered_nearby) == (1, 0)
    # Far from that question, kim is ranked as before.
    after_payroll = await rank(service, embedder, "payroll export on the first of the month")
    assert [(c.person_id, round(c.score, 6)) for c in after_payroll] == [
        (c.person_id, round(c.score, 6)) for c in before_payroll
    ]


async def test_answering_an_invitation_lifts_that_person_on_similar_questions(service, embedder):
    pods = question("erin", "Kubernetes pods", "kubernetes pods restart, what to check?", thread="k3")
    await service.handle(batch(*HISTORY, pods))
    before = {c.person_id: c for c in await rank(service, embedder, "kubernetes pods restart again")}

    await service.handle(batch(responded("dave", "answered", question_event=pods)))

    after = {c.person_id: c for c in await rank(service, embedder, "kubernetes pods restart again")}
    assert after["dave"].score - after["kim"].score > before["dave"].score - before["kim"].score
    # Parts are measured from the weakest candidate: dave's lift is his own part, or, if he is
    # still the weakest, everyone else's loss.
    assert after["dave"].parts.get("feedback", 0) > 0 or after["kim"].parts["feedback"] < 0


async def test_what_someone_says_after_answering_a_question_does_not_undo_the_answer(service, embedder):
    pods = question("erin", "Kubernetes pods", "kubernetes pods restart, what to check?", thread="k3")
    await service.handle(batch(*HISTORY, pods, responded("dave", "answered", question_event=pods)))
    answered = {c.person_id: c.score for c in await rank(service, embedder, "kubernetes pods restart again")}

    # A reminder declined, even "not my area", a day later: dave still answered that question.
    await service.handle(batch(responded("dave", "not_my_area", question_event=pods, at=NOW - timedelta(hours=12))))

    after = {c.person_id: c.score for c in await rank(service, embedder, "kubernetes pods restart again")}
    assert after == pytest.approx(answered)


async def test_a_response_counts_only_for_questions_asked_after_it(service, embedder):
    pods = question("erin", "Kubernetes pods", "kubernetes pods restart, what to check?", thread="k3")
    await service.handle(batch(*HISTORY, pods, responded("kim", "not_my_area", question_event=pods, at=NOW)))

    earlier = await rank(service, embedder, "kubernetes pods restart again", now=NOW - timedelta(hours=1))

    assert earlier[0].person_id == "kim" and "feedback" not in earlier[0].parts


async def test_a_response_arriving_after_its_persons_erasure_is_not_kept(service, index, embedder):
    pods = question("erin", "Kubernetes pods", "kubernetes pods restart, what to check?", thread="k3")
    await service.handle(batch(*HISTORY, pods))

    # The erasure (posts topic) overtakes kim's response (responses topic).
    await service.handle(batch(PersonErased(tenant="acme", data=PersonRef(person_id="kim"))))
    await service.handle(
        batch(responded("kim", "answered", question_event=pods), responded("dave", "answered", question_event=pods))
    )

    assert {key[2] for key in index.feedback} == {"dave"}


async def test_a_response_to_a_question_no_longer_indexed_is_dropped_and_the_batch_goes_on(
    service, index, embedder, published
):
    gone = question("erin", "Kubernetes pods", "kubernetes pods restart", thread="k3", backfill=True)
    await service.handle(batch(*HISTORY))

    await service.handle(
        batch(
            responded("kim", "not_my_area", question_event=gone),
            question("zoe", "Pods", "kubernetes pods", thread="k9"),
        )
    )

    assert index.feedback == {}
    assert published[0].data.candidates[0].person_id == "kim"


async def test_each_match_is_one_log_line_with_the_questions_ids_and_the_best_candidates(service, caplog):
    caplog.set_level(logging.INFO, logger="services.matcher.service")
    caplog.handler.setFormatter(JsonFormatter("matcher"))
    await service.handle(batch(*HISTORY))
    ask = question("erin", "Kubernetes pods", "my kubernetes pods restart, what to check?", thread="k3")
    await service.handle(batch(ask))

    lines = [json.loads(text) for text in caplog.text.splitlines()]
    [line] = [entry for entry in lines if entry.get("event") == "match"]
    assert (line["tenant"], line["thread_id"], line["post_id"], line["event_id"]) == ("acme", "k3", ask.data.id,
                                                                                      str(ask.id))
    assert line["pool"] >= line["ranked"] >= 2 and line["candidates"][0]["person_id"] == "kim"
    assert all(set(c) == {"person_id", "score"} for c in line["candidates"]) and len(line["candidates"]) <= 5
    assert "restart" not in caplog.text, "a post's words are never logged"
