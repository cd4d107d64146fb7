"""The invitation webhook body and its "why you" sentence."""

import json
from datetime import UTC, datetime

import pytest

from services.notifier.payload import invitation_payload, why_you
from shared.events import Candidate, Evidence, PostKind, Question

pytestmark = pytest.mark.unit


def evidence(title: str | None, *, kind=PostKind.ANSWER, similarity=0.8, accepted=False, snippet="text") -> Evidence:
    return Evidence(
        post_id=f"p-{similarity}", thread_id="t0", kind=kind, title=title, snippet=snippet,
        similarity=similarity, accepted=accepted, url="https://intra/p",
    )


def test_why_names_the_best_post_and_counts_the_others():
    found = [
        evidence("Vault policies", similarity=0.6),
        evidence("How do we rotate the Vault token?", similarity=0.9, accepted=True),
        evidence("Token TTLs", similarity=0.5),
    ]
    assert why_you(found) == "You answered 'How do we rotate the Vault token?' (accepted) and 2 similar posts."


def test_why_for_a_single_question_asked():
    assert why_you([evidence("Kafka lag alerts", kind=PostKind.QUESTION)]) == "You asked 'Kafka lag alerts'."


def test_why_for_one_other_post_is_singular():
    text = why_you([evidence("A", kind=PostKind.COMMENT, similarity=0.9), evidence("B", similarity=0.1)])
    assert text == "You commented on 'A' and 1 similar post."


def test_why_quotes_the_snippet_when_the_post_has_no_title():
    assert why_you([evidence(None, snippet="restart the consumer group")]) == "You answered 'restart the consumer group'."


def test_why_leads_with_activity_when_it_outweighs_the_posts_match():
    found = [evidence("paygate p99 latency spike", similarity=0.31, accepted=True), evidence("Deploy freeze", similarity=0.2)]
    parts = {"similarity": 0.4, "lexical": 0.1, "activity": 2.1, "answers": 0.9}

    assert why_you(found, parts) == (
        "You have been answering a lot lately; closest to this question, you answered 'paygate p99 latency spike' (accepted)."
    )


def test_why_names_the_posts_when_their_match_is_the_biggest_part():
    found = [evidence("VPN connected but internal sites don't resolve", similarity=0.82), evidence("DNS split", similarity=0.7)]
    parts = {"similarity": 2.1, "lexical": 0.5, "activity": 1.9, "tags": 0.3}

    assert why_you(found, parts) == "You answered 'VPN connected but internal sites don't resolve' and 1 similar post."


def test_why_leads_with_tags_when_they_are_the_biggest_part():
    found = [evidence("VPN connected but internal sites don't resolve", kind=PostKind.COMMENT, similarity=0.65)]
    parts = {"similarity": 1.0, "lexical": 0.8, "activity": 0.9, "tags": 2.0}

    assert why_you(found, parts) == (
        "You often answer questions tagged like this one; "
        "closest to this question, you commented on 'VPN connected but internal sites don't resolve'."
    )


def test_why_ignores_parts_it_has_no_words_for():
    assert why_you([evidence("Vault")], {"similarity": 0.1, "mystery": 5.0}) == "You answered 'Vault'."


def test_why_without_evidence_still_reads_as_a_sentence():
    assert why_you([]).endswith(".")


def test_payload_has_type_timestamp_and_data_without_the_tenant():
    question = Question(post_id="q1", thread_id="t1", author_id="asker", title="Rotate Vault?", excerpt="How…", url="https://intra/q1")
    candidate = Candidate(
        person_id="ann", score=0.87, evidence=(evidence("Rotate Vault", accepted=True),), parts={"similarity": 0.8, "tags": 0.07}
    )
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    body = json.loads(invitation_payload(invitation_id="inv_1", question=question, candidate=candidate, created_at=created))
    assert body["type"] == "invitation.created"
    assert body["timestamp"] == "2026-01-02T03:04:05+00:00"
    data = body["data"]
    assert "tenant" not in data
    assert data["invitation_id"] == "inv_1" and data["thread_id"] == "t1" and data["person_id"] == "ann"
    assert data["question"] == {"post_id": "q1", "title": "Rotate Vault?", "url": "https://intra/q1", "excerpt": "How…"}
    assert data["why"] == "You answered 'Rotate Vault' (accepted)."
    assert data["evidence"][0] == {
        "post_id": "p-0.8", "title": "Rotate Vault", "snippet": "text", "url": "https://intra/p",
        "similarity": 0.8, "kind": "answer", "accepted": True,
    }
    assert data["parts"] == {"similarity": 0.8, "tags": 0.07} and data["score"] == 0.87


def test_payload_why_reads_the_candidates_parts():
    question = Question(post_id="q1", thread_id="t1", author_id="asker", title="VPN?", excerpt="…", url="https://intra/q1")
    candidate = Candidate(
        person_id="tomas", score=3.9, evidence=(evidence("paygate latency", similarity=0.3),),
        parts={"similarity": 0.2, "activity": 2.5},
    )
    created = datetime(2026, 1, 2, tzinfo=UTC)
    data = json.loads(invitation_payload(invitation_id="inv_2", question=question, candidate=candidate, created_at=created))["data"]
    assert data["why"].startswith("You have been answering a lot lately; closest to this question, you answered 'paygate")
