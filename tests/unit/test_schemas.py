"""The published JSON Schemas: written from their models, and true of what is really sent."""

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from services.notifier.payload import invitation_payload
from shared.events import Candidate, Evidence, PostKind, Question, TrackRecord
from shared.schemas import DEFAULT_FOLDER, PUBLISHED, schema_text

pytestmark = pytest.mark.unit

FOLDER = Path(__file__).resolve().parents[2] / DEFAULT_FOLDER


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_each_published_schema_is_what_its_model_says(name):
    path = FOLDER / name
    assert path.exists(), f"{path} is missing: run `make schemas`"
    assert path.read_text(encoding="utf-8") == schema_text(PUBLISHED[name]), f"{path} is stale: run `make schemas`"


def test_a_webhook_body_as_sent_is_valid_under_the_published_schema():
    schema = json.loads((FOLDER / "invitation.created.json").read_text(encoding="utf-8"))
    question = Question(post_id="q1", thread_id="t1", author_id="a", title="Kafka lag", excerpt="Consumers fall behind")
    evidence = Evidence(post_id="p1", thread_id="t0", kind=PostKind.ANSWER, title="Lag", snippet="s", similarity=0.8,
                        accepted=True)
    record = TrackRecord(answers=9, accepted=3, answers_last_30_days=4, answers_last_90_days=7)
    candidate = Candidate(person_id="kim", score=1.5, evidence=(evidence,), parts={"similarity": 1.5},
                          closeness=0.8, track_record=record)
    body = invitation_payload(invitation_id="inv_1", question=question, candidate=candidate,
                              created_at=datetime(2026, 1, 2, tzinfo=UTC))

    jsonschema.validate(json.loads(body), schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**json.loads(body), "data": {"person_id": "kim"}}, schema)
