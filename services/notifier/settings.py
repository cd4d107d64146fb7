"""Settings of the notifier: its database, the invite policy, webhook retries and egress rules."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.notifier.egress import AllowList
from services.notifier.policy import MIN_SIMILARITY, InvitePolicy, Policies, parse_tenant_policies
from services.notifier.retry import parse_schedule
from shared.settings import CommonSettings, _env

DEFAULT_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,36000"


class NotifierSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = 8003
    # None means the embedded default: SQLite under the data folder.
    database_url: str | None = _env("DATABASE_URL", default=None)
    # The invite policy's defaults; NOTIFIER_TENANT_POLICIES overrides them per tenant (JSON).
    # Bounded like NOTIFIER_TENANT_POLICIES' fields: a default may not be what an override may not.
    max_invites_per_thread: int = Field(default=3, ge=1)
    max_invites_total_per_thread: int = Field(default=6, ge=1)
    max_invites_per_day: int = Field(default=3, ge=0)
    max_invites_per_week: int = Field(default=10, ge=0)
    spread_margin: float = Field(default=0.05, ge=0, le=1)
    escalation_delay: float = Field(default=4 * 3600, ge=0)
    min_similarity: float = Field(default=MIN_SIMILARITY, ge=-1, le=1)
    tenant_policies: str = "{}"
    escalation_poll_interval: float = 30.0
    # Seconds between attempts: attempt 1 is immediate, then one retry per entry.
    retry_schedule: str = _env("NOTIFIER_RETRY_SCHEDULE", default=DEFAULT_RETRY_SCHEDULE)
    connect_timeout: float = 5.0
    total_timeout: float = 15.0
    consume: bool = True
    delivery_poll_interval: float = 1.0
    # Matches recorded in one transaction (one sync to disk on SQLite) before their webhooks go out.
    matches_per_transaction: int = Field(default=4, ge=1)
    delivery_batch_size: int = 20
    # After a rotation the old secret signs too, for this long, so receivers can switch over.
    secret_overlap: float = 24 * 3600
    # An endpoint with no success for this long is disabled.
    disable_after: float = 5 * 86400
    # Hosts, addresses or CIDRs webhooks may reach although they are private, e.g. "127.0.0.0/8,::1".
    allowed_hosts: str = ""

    @field_validator("retry_schedule")
    @classmethod
    def _schedule_parses(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("tenant_policies")
    @classmethod
    def _policies_parse(cls, value: str) -> str:
        parse_tenant_policies(value)
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _allow_list_parses(cls, value: str) -> str:
        AllowList.parse(value)
        return value

    @model_validator(mode="after")
    def _default_database(self) -> NotifierSettings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'notifier.db'}"
        return self

    @property
    def retry_delays(self) -> tuple[float, ...]:
        return parse_schedule(self.retry_schedule)

    @property
    def allow_list(self) -> AllowList:
        return AllowList.parse(self.allowed_hosts)

    def policies(self) -> Policies:
        """The default invite policy and each tenant's overrides of it."""
        default = InvitePolicy(
            initial=self.max_invites_per_thread,
            total=self.max_invites_total_per_thread,
            per_day=self.max_invites_per_day,
            per_week=self.max_invites_per_week,
            spread_margin=self.spread_margin,
            escalation_delay=timedelta(seconds=self.escalation_delay),
            min_similarity=self.min_similarity,
        )
        return Policies(default, parse_tenant_policies(self.tenant_policies))
