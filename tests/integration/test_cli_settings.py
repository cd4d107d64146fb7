"""A bad setting, as an operator meets it: one line naming the variable and the rule, exit status 2."""

from __future__ import annotations

import pytest

from tests.support.cli import expertmatch

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("command", "env", "expected"),
    [
        ("ingest", {"INGEST_PORT": "abc"}, "expertmatch: INGEST_PORT='abc': Input should be a valid integer"),
        ("matcher", {"MATCHER_BATCH_SIZE": "0"},
         "expertmatch: MATCHER_BATCH_SIZE='0': Input should be greater than or equal to 1"),
        ("notifier", {"NOTIFIER_RETRY_SCHEDULE": "soon"},
         "expertmatch: NOTIFIER_RETRY_SCHEDULE='soon': 'soon' is not a number of seconds"),
        ("topics", {"KAFKA_SESSION_TIMEOUT_MS": "5"},
         "expertmatch: KAFKA_SESSION_TIMEOUT_MS='5': Input should be greater than or equal to 1000"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable_and_exits_2(tmp_path, command, env, expected):
    ran = expertmatch(command, env=env, cwd=tmp_path)

    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.splitlines() == [ran.stderr.strip()], "one line, no traceback"
    assert ran.stderr.startswith(expected)


def test_each_bad_variable_has_its_line(tmp_path):
    ran = expertmatch("matcher", env={"MATCHER_PORT": "x", "KAFKA_ENABLE_IDEMPOTENCE": "maybe"}, cwd=tmp_path)

    assert ran.returncode == 2
    variables = sorted(line.split("=")[0] for line in ran.stderr.splitlines())
    assert variables == ["expertmatch: KAFKA_ENABLE_IDEMPOTENCE", "expertmatch: MATCHER_PORT"]


def test_a_bad_api_key_list_is_reported_without_showing_the_keys(tmp_path):
    ran = expertmatch("ingest", env={"EXPERTMATCH_API_KEYS": "good-key:acme,secret-without-tenant"}, cwd=tmp_path)

    assert ran.returncode == 2
    assert ran.stderr.strip() == "expertmatch: EXPERTMATCH_API_KEYS=***: entry 2 is not key:tenant"
    assert "secret-without-tenant" not in ran.stderr and "good-key" not in ran.stderr
