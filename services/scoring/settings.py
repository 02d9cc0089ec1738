"""Scoring settings (`SCORING_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ScoringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore")

    schema_name: str = Field(default="scoring", description="PostgreSQL schema this service owns.")
    database_url: str | None = Field(default=None, description="Overrides ENGAGE_DATABASE_URL.")
    consumer_group: str = "scoring"
    max_batch_records: int = Field(default=10_000, ge=1, le=100_000)
    consume: bool = Field(default=True, description="Run the consumer (off = read API only).")
    changelog_interval_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long the changelog outbox gathers between passes once drained: repeated "
        "changes of one entity within it are published once.",
    )
