"""The retry schedule, Retry-After, what each answer decides, and the signature format."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from services.notifier.delivery import decide
from services.notifier.retry import next_attempt_at, parse_retry_after, parse_schedule
from services.notifier.settings import NotifierSettings
from services.notifier.signing import InvalidSignature, new_secret, verify, webhook_headers

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SCHEDULE = (5.0, 300.0, 1800.0)


def test_schedule_parses_seconds_and_rejects_nonsense():
    assert parse_schedule("5, 300,1800") == (5.0, 300.0, 1800.0)
    assert parse_schedule("0.05,0.05") == (0.05, 0.05)
    assert parse_schedule("") == ()
    with pytest.raises(ValueError, match="'soon'"):
        parse_schedule("5,soon")
    with pytest.raises(ValueError, match="'-1'"):
        parse_schedule("-1")


def test_settings_default_schedule_and_database(tmp_path):
    settings = NotifierSettings(data_dir=tmp_path)
    assert settings.retry_delays == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/notifier.db"
    with pytest.raises(ValidationError, match="NOTIFIER_RETRY_SCHEDULE"):
        NotifierSettings(data_dir=tmp_path, retry_schedule="1,x")


def test_settings_read_the_shared_environment_names(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://db/notifier")
    monkeypatch.setenv("NOTIFIER_RETRY_SCHEDULE", "1,2")
    monkeypatch.setenv("NOTIFIER_PORT", "9003")
    settings = NotifierSettings(data_dir=tmp_path)
    assert (settings.database_url, settings.retry_delays, settings.port) == (
        "postgresql+asyncpg://db/notifier",
        (1, 2),
        9003,
    )


def test_each_failed_attempt_waits_for_its_step_of_the_schedule():
    assert next_attempt_at(attempts=1, now=NOW, schedule=SCHEDULE) == NOW + timedelta(seconds=5)
    assert next_attempt_at(attempts=3, now=NOW, schedule=SCHEDULE) == NOW + timedelta(seconds=1800)
    assert next_attempt_at(attempts=4, now=NOW, schedule=SCHEDULE) is None


def test_retry_after_in_seconds_or_as_an_http_date():
    assert parse_retry_after("120", NOW) == timedelta(seconds=120)
    assert parse_retry_after("Sun, 01 Mar 2026 12:10:00 GMT", NOW) == timedelta(minutes=10)
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", NOW) == timedelta(0)
    assert parse_retry_after("whenever", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_retry_after_pushes_the_next_attempt_later_but_never_earlier():
    later = next_attempt_at(attempts=1, now=NOW, schedule=SCHEDULE, status=429, retry_after="60")
    assert later == NOW + timedelta(seconds=60)
    dated = next_attempt_at(
        attempts=1, now=NOW, schedule=SCHEDULE, status=503, retry_after="Sun, 01 Mar 2026 13:00:00 GMT"
    )
    assert dated == NOW + timedelta(hours=1)
    sooner = next_attempt_at(attempts=2, now=NOW, schedule=SCHEDULE, status=429, retry_after="1")
    assert sooner == NOW + timedelta(seconds=300)
    # Only 429 and 503 carry a meaningful Retry-After.
    assert next_attempt_at(attempts=1, now=NOW, schedule=SCHEDULE, status=500, retry_after="60") == NOW + timedelta(
        seconds=5
    )


def test_answers_decide_the_delivery():
    assert decide(attempts=1, status=204, retry_after=None, now=NOW, schedule=SCHEDULE).state == "delivered"
    gone = decide(attempts=1, status=410, retry_after=None, now=NOW, schedule=SCHEDULE)
    assert gone.state == "failed" and "410" in gone.disable_reason
    retry = decide(attempts=1, status=None, retry_after=None, now=NOW, schedule=SCHEDULE)
    assert (retry.state, retry.next_attempt_at) == ("pending", NOW + timedelta(seconds=5))
    redirect = decide(attempts=1, status=302, retry_after=None, now=NOW, schedule=SCHEDULE)
    assert redirect.state == "pending"
    exhausted = decide(attempts=4, status=500, retry_after=None, now=NOW, schedule=SCHEDULE)
    assert (exhausted.state, exhausted.next_attempt_at, exhausted.disable_reason) == ("failed", None, None)


def test_signatures_verify_with_the_standard_webhooks_library():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret) > 40
    body = b'{"type":"invitation.created"}'
    headers = webhook_headers(secret, "msg_1", body)
    assert Webhook(secret).verify(body, headers) == {"type": "invitation.created"}
    verify(secret, headers, body)
    with pytest.raises(InvalidSignature):
        verify(new_secret(), headers, body)
    with pytest.raises(InvalidSignature):
        verify(secret, headers, body + b" ")
