"""The invitation webhook body and its "why you" sentence."""

import json
from datetime import UTC, datetime

import pytest

from services.notifier.app import create_app
from services.notifier.payload import invitation_payload, why_you
from services.notifier.settings import NotifierSettings
from shared.events import Candidate, Evidence, PostKind, Question, TagRecord, TrackRecord
from shared.webhooks import InvitationCreated

pytestmark = pytest.mark.unit


def evidence(title: str | None, *, kind=PostKind.ANSWER, similarity=0.8, accepted=False, snippet="text") -> Evidence:
    return Evidence(
        post_id=f"p-{similarity}", thread_id="t0", kind=kind, title=title, snippet=snippet,
        similarity=similarity, accepted=accepted, url="https://intra/p",
    )


def person(evidence=(), parts=None, record=None) -> Candidate:
    return Candidate(person_id="ann", score=1.0, evidence=tuple(evidence), parts=parts or {}, track_record=record)


def test_why_names_the_closest_post_and_claims_nothing_of_the_others():
    found = [
        evidence("Vault policies", similarity=0.6),
        evidence("How do we rotate the Vault token?", similarity=0.9, accepted=True),
        evidence("Token TTLs", similarity=0.5),
    ]
    assert why_you(person(found)) == "You answered “How do we rotate the Vault token?” (accepted)."


def test_why_for_a_question_asked_or_a_comment():
    assert why_you(person([evidence("Kafka lag alerts", kind=PostKind.QUESTION)])) == "You asked “Kafka lag alerts”."
    assert why_you(person([evidence("A", kind=PostKind.COMMENT)])) == "You commented on “A”."


def test_why_names_an_answer_before_a_closer_comment_or_question():
    found = [
        evidence("Terraform plan wants to destroy the RDS instance", kind=PostKind.COMMENT, similarity=0.9),
        evidence("Terraform state drift", similarity=0.6),
    ]
    assert why_you(person(found)) == "You answered “Terraform state drift”."


def test_why_quotes_the_snippet_when_the_post_has_no_title():
    assert (
        why_you(person([evidence(None, snippet="restart the consumer group")]))
        == "You answered “restart the consumer group”."
    )


def test_why_adds_the_persons_own_answers_in_the_questions_tag():
    record = TrackRecord(
        answers=40, accepted=12, tags=(TagRecord(tag="kafka", answers=14, accepted=5), TagRecord(tag="ops", answers=2))
    )
    found = [evidence("Consumer lag after deploys", similarity=0.8, accepted=True)]

    assert why_you(person(found, {"similarity": 2.0, "tags": 0.5}, record)) == (
        "You answered “Consumer lag after deploys” (accepted); you have 14 answers tagged kafka, 5 of them accepted."
    )


def test_why_leads_with_the_fact_behind_activity_when_it_outweighs_the_posts_match():
    record = TrackRecord(answers=30, accepted=9, answers_last_30_days=6, answers_last_90_days=11)
    found = [
        evidence("paygate p99 latency spike", similarity=0.41, accepted=True),
        evidence("Deploy freeze", similarity=0.2),
    ]
    parts = {"similarity": 0.4, "lexical": 0.1, "activity": 2.1, "answers": 0.9}

    assert why_you(person(found, parts, record)) == (
        "You wrote 6 answers in the last 30 days, and you answered “paygate p99 latency spike” (accepted)."
    )


def test_why_states_counts_never_a_score_part_without_a_fact_behind_it():
    """A part that leads with no count of the person's to back it (no answers at all) says nothing."""
    found = [evidence("Terraform state drift", kind=PostKind.QUESTION, similarity=0.5)]
    parts = {"similarity": 0.3, "answers": 2.1, "accepted": 2.0, "activity": 1.5}

    text = why_you(person(found, parts, TrackRecord()))

    assert text == "You asked “Terraform state drift”."
    assert why_you(person(found, parts)) == text  # a matcher older than track records


def test_why_for_accepted_answers_and_volume_leads():
    record = TrackRecord(answers=40, accepted=25)
    found = [evidence("Vault", similarity=0.5)]

    assert why_you(person(found, {"similarity": 0.2, "accepted": 1.0}, record)) == (
        "25 of your 40 answers were accepted, and you answered “Vault”."
    )
    assert why_you(person(found, {"similarity": 0.2, "answers": 1.0}, record)) == (
        "You have written 40 answers, and you answered “Vault”."
    )


def test_why_leads_with_invitations_answered_when_feedback_weighed_most():
    record = TrackRecord(answers=3, answered_nearby=2)
    found = [evidence("Vault", similarity=0.5)]

    assert why_you(person(found, {"similarity": 0.2, "feedback": 1.5}, record)) == (
        "You answered 2 invitations to questions like this one, and you answered “Vault”."
    )


def test_why_counts_are_singular_when_one():
    record = TrackRecord(answers=1, accepted=1, answers_last_30_days=0, answers_last_90_days=1,
                         tags=(TagRecord(tag="vpn", answers=1),))
    found = [evidence("VPN", similarity=0.6)]

    assert why_you(person(found, {"activity": 2.0}, record)) == (
        "You wrote 1 answer in the last 90 days, and you answered “VPN”."
    )
    assert why_you(person(found, {"similarity": 2.0}, record)) == "You answered “VPN”; you have 1 answer tagged vpn."


def test_why_ignores_parts_it_has_no_facts_for():
    assert why_you(
        person([evidence("Vault")], {"similarity": 0.1, "mystery": 5.0, "feedback": 3.0}, TrackRecord())
    ) == ("You answered “Vault”.")


def test_why_without_evidence_still_reads_as_a_sentence():
    assert why_you(person()) == "You were ranked among the people to ask."


def test_payload_has_type_timestamp_and_data_without_the_tenant():
    question = Question(post_id="q1", thread_id="t1", author_id="asker", title="Rotate Vault?", excerpt="How…", url="https://intra/q1")
    candidate = Candidate(
        person_id="ann",
        score=0.87,
        evidence=(evidence("Rotate Vault", accepted=True),),
        parts={"similarity": 0.8, "tags": 0.07},
    )
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    body = json.loads(
        invitation_payload(invitation_id="inv_1", question=question, candidate=candidate, created_at=created)
    )
    assert body["type"] == "invitation.created"
    assert body["timestamp"] == "2026-01-02T03:04:05+00:00"
    data = body["data"]
    assert "tenant" not in data
    assert data["invitation_id"] == "inv_1" and data["thread_id"] == "t1" and data["person_id"] == "ann"
    assert data["question"] == {"post_id": "q1", "title": "Rotate Vault?", "url": "https://intra/q1", "excerpt": "How…"}
    assert data["why"] == "You answered “Rotate Vault” (accepted)."
    assert data["evidence"][0] == {
        "post_id": "p-0.8", "title": "Rotate Vault", "snippet": "text", "url": "https://intra/p",
        "similarity": 0.8, "kind": "answer", "accepted": True,
    }
    assert data["parts"] == {"similarity": 0.8, "tags": 0.07} and data["score"] == 0.87


def test_payload_carries_the_track_record_its_why_states():
    question = Question(post_id="q1", thread_id="t1", author_id="asker", title="VPN?", excerpt="…", url="https://intra/q1")
    record = TrackRecord(answers=9, accepted=3, answers_last_30_days=4, answers_last_90_days=7)
    candidate = Candidate(
        person_id="tomas", score=3.9, evidence=(evidence("paygate latency", similarity=0.4),),
        parts={"similarity": 0.2, "activity": 2.5}, track_record=record,
    )
    created = datetime(2026, 1, 2, tzinfo=UTC)
    data = json.loads(
        invitation_payload(invitation_id="inv_2", question=question, candidate=candidate, created_at=created)
    )["data"]
    assert data["why"] == "You wrote 4 answers in the last 30 days, and you answered “paygate latency”."
    assert data["closeness"] is None  # not measured by this candidate's matcher
    assert data["track_record"] == {
        "answers": 9, "accepted": 3, "answers_last_30_days": 4, "answers_last_90_days": 7, "tags": [],
        "answered_nearby": 0, "not_my_area_nearby": 0,
    }


def test_the_body_is_the_published_model_and_the_notifier_declares_it():
    question = Question(post_id="q1", thread_id="t1", author_id="a", title="Kafka lag", excerpt="e")
    candidate = Candidate(person_id="kim", score=1.0)
    raw = invitation_payload(invitation_id="inv_3", question=question, candidate=candidate,
                             created_at=datetime(2026, 1, 2, tzinfo=UTC))

    assert InvitationCreated.model_validate_json(raw).data.invitation_id == "inv_3"
    document = create_app(NotifierSettings()).openapi()
    declared = document["webhooks"]["invitation.created"]["post"]["requestBody"]["content"]["application/json"]
    assert declared["schema"]["$ref"].endswith("/InvitationCreated")
    assert set(document["components"]["schemas"]["InvitationData"]["required"]) >= {"invitation_id", "why", "person_id"}
