"""IngestSettings: the HTTP front door's own limits, under the `INGEST_` prefix."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = 8001
    # One post's body, measured as the client sent it (HTML included).
    max_body_bytes: int = 64 * 1024
    # A whole request, checked before any JSON is parsed.
    max_request_bytes: int = 16 * 1024 * 1024
    max_batch: int = 1_000
    # How long a request waits for the broker's acks before answering 503.
    publish_timeout_s: float = 10.0
