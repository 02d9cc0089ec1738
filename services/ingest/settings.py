"""Ingest settings (`INGEST_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")

    port: int = 8001
    schema_name: str = Field(default="ingest", description="PostgreSQL schema this service owns.")
    database_url: str | None = Field(default=None, description="Overrides ENGAGE_DATABASE_URL.")
    broker_ack_timeout_s: float = Field(
        default=5.0, gt=0, description="How long to wait for the broker's acks before a 503."
    )
    default_rate_per_s: float = Field(default=5000.0, gt=0, description="Events/s for new keys.")
    key_cache_ttl_s: float = 30.0
    user_rate_per_s: float = Field(
        default=20.0, gt=0, description="Events/s each user token's user may post (SPEC §14)."
    )
    user_burst: float = Field(
        default=1000.0, gt=0, description="Events a user may post at once (an offline queue)."
    )
