"""Notify settings (`NOTIFY_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    schema_name: str = Field(default="notify", description="PostgreSQL schema this service owns.")
    database_url: str | None = Field(default=None, description="Overrides ENGAGE_DATABASE_URL.")
    consumer_group: str = "notify"
    consume: bool = Field(default=True, description="Consume inputs and dispatch messages.")
    im_webhook_url: str | None = Field(
        default=None, description="The IM platform's webhook; unset = the sandbox provider."
    )
    im_webhook_secret: str = Field(default="", description="HMAC key for webhook signatures.")
    smpp_host: str | None = Field(default=None, description="The SMSC; unset = sandbox for SMS.")
    smpp_port: int = Field(default=2775, ge=1, le=65535)
    smpp_system_id: str = "engage"
    smpp_password: str = ""
    smpp_source_addr: str = Field(default="10086", description="Sender address of our SMS.")
    scoring_url: str | None = Field(
        default=None, description="Scoring's read API, for segments by leaderboard or activity."
    )
    scoring_key: str = Field(default="", description="A viewer key for scoring's read API.")
    sandbox_fail_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of sandbox sends that fail (for testing)."
    )
    im_rate_per_s: float = Field(default=0, ge=0, description="Send rate limit; 0 = none.")
    sms_rate_per_s: float = Field(default=0, ge=0, description="Send rate limit; 0 = none.")
    dispatch_batch: int = Field(default=200, ge=1, le=10_000)
    send_concurrency: int = Field(
        default=32, ge=1, le=1000, description="Messages in flight to providers per replica."
    )
    sending_lease_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="A message left `sending` this long (its replica crashed mid-send) is sent "
        "again: longer than any provider call, or a slow send goes out twice.",
    )
    digest_gather_s: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="A reward notice waits this long after it is queued, so the grants of one "
        "settlement go out in one digest rather than the first alone (SPEC §11).",
    )
    max_attempts: int = Field(default=5, ge=1, le=50, description="Then `failed` and the DLQ.")
    retry_base_s: float = Field(
        default=2.0, gt=0, le=600, description="Backoff base: attempt n waits up to base·2^n."
    )
