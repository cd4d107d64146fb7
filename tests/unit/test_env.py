"""What `shared/env.py` lets an operator see: each field's variable, and values with their secrets masked."""

from __future__ import annotations

import pytest

from services.matcher.settings import MatcherSettings
from services.notifier.settings import NotifierSettings
from services.operations.version import package_version
from shared.env import masked, variable_of

pytestmark = pytest.mark.unit


def test_a_field_is_named_by_its_alias_or_by_the_prefix_and_its_name():
    assert variable_of(MatcherSettings, "batch_size") == "MATCHER_BATCH_SIZE"
    assert variable_of(MatcherSettings, "qdrant_url") == "QDRANT_URL"
    assert variable_of(NotifierSettings, "database_url") == "DATABASE_URL"
    assert variable_of(NotifierSettings, "api_keys") == "EXPERTMATCH_API_KEYS"


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("EXPERTMATCH_API_KEYS", "k1:acme", "***"),
        ("SOME_TOKEN", "abc", "***"),
        ("EXPERTMATCH_API_KEYS", "", ""),
        ("DATABASE_URL", "postgresql://app:pw@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("DATABASE_URL", "sqlite+aiosqlite:////data/notifier.db", "sqlite+aiosqlite:////data/notifier.db"),
        ("KAFKA_BOOTSTRAP_SERVERS", "SASL_SSL://u:p1@h1:9093,SASL_SSL://u:p2@h2:9093",
         "SASL_SSL://u:***@h1:9093,SASL_SSL://u:***@h2:9093"),
        ("QDRANT_URL", "https://q.example:6333/?api_key=abc&timeout=5", "https://q.example:6333/?api_key=***&timeout=5"),
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "127.0.0.1:9092"),
    ],
)
def test_secrets_are_masked_and_the_rest_shown_as_it_is(variable, value, shown):
    assert masked(variable, value) == shown


def test_a_number_is_shown_whatever_its_name():
    assert masked("NOTIFIER_SECRET_OVERLAP", "86400.0", numeric=True) == "86400.0"


def test_the_version_falls_back_to_the_source_trees_pyproject(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "expertmatch"\nversion = "9.8.7"\n')

    assert package_version("expertmatch-never-installed", pyproject) == "9.8.7 (not installed)"
    assert package_version("expertmatch-never-installed", tmp_path / "absent.toml").startswith("unknown")
