"""The `expertmatch` command as an operator meets it: a bad setting, `config` and `--version`."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import metadata

import pytest

from services.matcher.index import Contribution, EdgeIndex
from shared.events import PostKind
from tests.support.cli import expertmatch

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("command", "env", "expected"),
    [
        ("ingest", {"INGEST_PORT": "abc"}, "expertmatch: INGEST_PORT='abc': Input should be a valid integer"),
        ("matcher", {"MATCHER_BATCH_SIZE": "0"},
         "expertmatch: MATCHER_BATCH_SIZE='0': Input should be greater than or equal to 1"),
        ("matcher", {"MATCHER_EMBEDDER": "tensorflow"},
         "expertmatch: MATCHER_EMBEDDER='tensorflow': Input should be 'torch', 'onnx' or 'onnx-int8'"),
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


SECRETS = {
    "EXPERTMATCH_API_KEYS": "k-7f3e9a1c:acme,k-0b2d4e6f:globex",
    "DATABASE_URL": "postgresql+asyncpg://expertmatch:pw-81c4e2@db:5432/expertmatch",
}


def test_config_shows_each_services_variables_and_never_a_secret(tmp_path):
    ran = expertmatch("config", env={**SECRETS, "NOTIFIER_PORT": "9103"}, cwd=tmp_path)

    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert [line for line in lines if line.startswith("#")] == [
        "# common: read by every service", "# ingest", "# matcher", "# notifier",
    ]
    assert "EXPERTMATCH_API_KEYS=***" in lines
    assert "DATABASE_URL=postgresql+asyncpg://expertmatch:***@db:5432/expertmatch" in lines
    assert "NOTIFIER_PORT=9103" in lines, "set in the environment: no default mark"
    assert "INGEST_PORT=8001  # default" in lines
    assert "MATCHER_BATCH_SIZE=64  # default" in lines
    for secret in ("k-7f3e9a1c", "k-0b2d4e6f", "pw-81c4e2"):
        assert secret not in ran.stdout


def test_config_of_one_service_shows_the_common_settings_and_its_own(tmp_path):
    ran = expertmatch("config", "matcher", env=SECRETS, cwd=tmp_path)

    assert ran.returncode == 0, ran.stderr
    variables = [line.split("=")[0] for line in ran.stdout.splitlines() if not line.startswith("#")]
    assert "KAFKA_BOOTSTRAP_SERVERS" in variables and "QDRANT_URL" in variables
    assert not [name for name in variables if name.startswith(("INGEST_", "NOTIFIER_"))]
    assert "DATABASE_URL" not in variables


def test_config_with_a_bad_setting_says_so_as_the_service_would(tmp_path):
    ran = expertmatch("config", "notifier", env={"NOTIFIER_MIN_SIMILARITY": "2"}, cwd=tmp_path)

    assert ran.returncode == 2
    assert ran.stderr.startswith("expertmatch: NOTIFIER_MIN_SIMILARITY='2': Input should be less than or equal to 1")
    assert ran.stdout == ""


def test_version_is_the_installed_packages(tmp_path):
    ran = expertmatch("--version", cwd=tmp_path)

    assert ran.returncode == 0
    assert ran.stdout.strip() == f"expertmatch {metadata.version('expertmatch')}"


async def test_compact_index_rewrites_the_matchers_edge_index_and_keeps_its_points(tmp_path):
    missing = expertmatch("compact-index", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert (missing.returncode, missing.stderr.strip()) == (1, f"no index at {tmp_path / 'index'}")

    index = await EdgeIndex.open(tmp_path / "index")
    await index.upsert([Contribution(
        tenant="acme", post_id="p1", thread_id="t1", author_id="ann", kind=PostKind.ANSWER, title=None,
        text="kept", created_at=datetime(2024, 5, 1, tzinfo=UTC), vector=[1.0] + [0.0] * 383,
    )])
    held = expertmatch("compact-index", "--data-dir", str(tmp_path), cwd=tmp_path)
    await index.close()
    ran = expertmatch("compact-index", "--data-dir", str(tmp_path), cwd=tmp_path)

    assert held.returncode == 1 and "stop the matcher first" in held.stderr
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"{tmp_path / 'index'}: ")
    reopened = await EdgeIndex.open(tmp_path / "index")
    try:
        assert [h.post_id for h in await reopened.search("acme", [1.0] + [0.0] * 383, limit=5)] == ["p1"]
    finally:
        await reopened.close()
