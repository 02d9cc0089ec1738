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
    simulation_max_user_days: int = Field(
        default=100_000_000,
        ge=1,
        description="Size budget of one simulation: (days in range) × (rules, of both versions "
        "when compared) × (users with stored days, estimated). Over it: 422 "
        "`simulation_too_large`, refused before any row is read.",
    )
    simulation_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Wall-clock bound of one simulation (and the statement timeout of its "
        "transaction); over it the work and its query are cancelled: 503 `simulation_timeout`.",
    )
    simulation_max_rss_mb: int = Field(
        default=1024,
        ge=64,
        description="A simulation stops (422 `simulation_too_large`) when the process's "
        "resident memory passes this while it runs: the grants a version would make are held "
        "in memory, and a rule that grants on most user-days holds as many.",
    )
    simulation_in_thread: bool = Field(
        default=True,
        description="Run each simulation on an event loop and a database connection of its "
        "own in a worker thread, so its Python work cannot hold up the service's other "
        "requests (/healthz stays fast; bench/RESULTS.md).",
    )
    simulation_thread_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Scheduling priority (Linux nice) of a simulation's worker thread: the "
        "event loop serving the other requests comes first.",
    )
