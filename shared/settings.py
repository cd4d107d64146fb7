"""Settings every service reads; each service extends them with its own, under its own prefix.

Nothing is read at import: `create_app(settings)` and `main()` build settings, tests pass them in.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.logs import LogFormat
from shared.topics import DEFAULT_TOPICS_FILE


def _env(name: str, **kwargs):
    """A field read from one exact environment variable, whatever the service's prefix."""
    return Field(validation_alias=AliasChoices(name), **kwargs)


def parse_api_keys(raw: str) -> dict[str, str]:
    """`key1:acme,key2:globex` -> {"key1": "acme", "key2": "globex"}."""
    keys: dict[str, str] = {}
    for number, item in enumerate(filter(None, (part.strip() for part in raw.split(","))), start=1):
        key, sep, tenant = item.partition(":")
        if not sep or not key.strip() or not tenant.strip():
            # Named by its place, not its text: the text may be the key itself.
            raise ValueError(f"EXPERTMATCH_API_KEYS: entry {number} is not key:tenant")
        if key.strip() in keys:
            raise ValueError("EXPERTMATCH_API_KEYS: a key is listed twice")
        keys[key.strip()] = tenant.strip()
    return keys


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    api_keys: str = _env("EXPERTMATCH_API_KEYS", default="")
    kafka_bootstrap_servers: str = _env("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:9092")
    # Apache Kafka supports idempotent producers; the embedded broker refuses them.
    kafka_idempotence: bool = _env("KAFKA_ENABLE_IDEMPOTENCE", default=False)
    # Prepended to every topic name: lets tests and tenants of one broker stay apart.
    kafka_topic_prefix: str = _env("KAFKA_TOPIC_PREFIX", default="")
    # A new group member waits about half of this before its first records: keep it short where
    # consumers start often (tests, the embedded default), longer where pauses are likely.
    kafka_session_timeout_ms: int = _env("KAFKA_SESSION_TIMEOUT_MS", default=10_000, ge=1_000)
    # How long the broker may hold a consumer's fetch that finds nothing new. A record produced
    # meanwhile can wait that long to be seen, so it bounds each hop of a question (posts to the
    # matcher, matches to the notifier): measured on the embedded broker, aiokafka's 500 ms
    # default made a hop take ~110 ms, 20 ms made it ~2 ms for ~3% of a core per idle consumer.
    kafka_fetch_max_wait_ms: int = _env("KAFKA_FETCH_MAX_WAIT_MS", default=20, ge=0, le=10_000)
    kafka_topics_file: Path = _env("KAFKA_TOPICS_FILE", default=DEFAULT_TOPICS_FILE)
    # Set by the owner of a broker that keeps nothing on disk (the embedded supervisor): see
    # shared/epoch.py. Unset for Apache Kafka, whose log is durable.
    kafka_epoch_file: Path | None = _env("KAFKA_EPOCH_FILE", default=None)
    data_dir: Path = _env("EXPERTMATCH_DATA_DIR", default=Path(".expertmatch"))
    log_level: str = _env("EXPERTMATCH_LOG_LEVEL", default="INFO")
    log_format: LogFormat = _env("EXPERTMATCH_LOG_FORMAT", default="json")

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, value: str) -> str:
        parse_api_keys(value)
        return value

    @property
    def tenants_by_key(self) -> dict[str, str]:
        return parse_api_keys(self.api_keys)

    def topic(self, name: str) -> str:
        return self.kafka_topic_prefix + name
