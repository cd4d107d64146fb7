"""Settings of the notifier: its database, the invite policy and the webhook retry schedule."""

from __future__ import annotations

from pydantic import field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.notifier.retry import parse_schedule
from shared.settings import CommonSettings, _env

DEFAULT_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,36000"


class NotifierSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = 8003
    # None means the embedded default: SQLite under the data folder.
    database_url: str | None = _env("DATABASE_URL", default=None)
    max_invites_per_thread: int = 3
    # Seconds between attempts: attempt 1 is immediate, then one retry per entry.
    retry_schedule: str = _env("NOTIFIER_RETRY_SCHEDULE", default=DEFAULT_RETRY_SCHEDULE)
    connect_timeout: float = 5.0
    total_timeout: float = 15.0
    consume: bool = True
    delivery_poll_interval: float = 1.0
    delivery_batch_size: int = 20

    @field_validator("retry_schedule")
    @classmethod
    def _schedule_parses(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("max_invites_per_thread")
    @classmethod
    def _limit_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("max_invites_per_thread must be at least 1")
        return value

    @model_validator(mode="after")
    def _default_database(self) -> "NotifierSettings":
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'notifier.db'}"
        return self

    @property
    def retry_delays(self) -> tuple[float, ...]:
        return parse_schedule(self.retry_schedule)
