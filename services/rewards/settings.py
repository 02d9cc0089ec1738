"""Rewards settings (`REWARDS_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RewardsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REWARDS_", extra="ignore")

    schema_name: str = Field(default="rewards", description="PostgreSQL schema this service owns.")
    database_url: str | None = Field(default=None, description="Overrides ENGAGE_DATABASE_URL.")
    consumer_group: str = "rewards"
    fulfilment_consumer_group: str = Field(
        default="rewards-fulfilment", description="Consumer group of engage.fulfilment.v1."
    )
    max_batch_records: int = Field(default=5_000, ge=1, le=100_000)
    consume: bool = Field(
        default=True, description="Run the metrics and fulfilment consumers and the settler."
    )
    settle_interval_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Seconds between settlement passes; 0 = only on POST /v1/settlements:run.",
    )
    catch_up_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="How long settlement waits for metrics to apply."
    )
    settle_retry_base_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Wait after a period's first failed settlement; doubles per failure, ≤ 1 h.",
    )
    outbox_interval_s: float = Field(default=0.2, ge=0, le=60)
    notify_url: str | None = Field(
        default=None,
        description="Notify's read API, for the notices of a campaign report; unset = the report "
        "leaves notices out (`engage report` then asks notify itself).",
    )
    notify_key: str = Field(default="", description="A viewer key for notify's read API.")
