"""Scoring settings (`SCORING_*`)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.scoring.domain.anomalies import AnomalyThresholds
from services.scoring.domain.retention import Retention


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
    ledger_live_horizon_days: int = Field(
        default=42,
        ge=35,
        le=3650,
        description="Days (by UTC day of occurred_at) the processed-event ledger keeps for live "
        "events: the 35-day acceptance window + the events topic's 7-day retention. Older days "
        "are dropped whole and sealed (their later events refused); docs/operations.md.",
    )
    ledger_import_hold_days: int = Field(
        default=7,
        ge=1,
        le=3650,
        description="An imported old day keeps its ledger this long after its last import "
        "batch, so re-running the import within it counts nothing twice.",
    )
    ledger_maintenance_interval_s: float = Field(
        default=3600.0,
        gt=0,
        le=86_400,
        description="How often partitions are made ahead and expired days dropped.",
    )

    # Anomaly flags (SPEC §14; docs/metrics.md "Anomaly flags" gives each measure).
    flag_message_rate_per_minute: int = Field(
        default=60, ge=1, le=100_000, description="message_rate: messages in one clock minute."
    )
    flag_points_spike_floor: int = Field(
        default=1000, ge=1, description="points_spike: a day's points must exceed this ..."
    )
    flag_points_spike_factor: float = Field(
        default=10.0, gt=0, le=1000, description="... and this many times the daily mean before."
    )
    flag_points_spike_history_days: int = Field(
        default=28, ge=1, le=35, description="points_spike: days of history the mean covers."
    )
    flag_lockstep_min_accounts: int = Field(
        default=5, ge=2, le=10_000, description="lockstep: accounts sharing one day's fingerprint."
    )
    flag_lockstep_min_events: int = Field(
        default=10, ge=1, description="lockstep: events each of them sent from the source."
    )
    flag_late_joins_days: int = Field(
        default=4, ge=1, le=28, description="late_joins: the month's last days that count late."
    )
    flag_late_joins_min: int = Field(
        default=10, ge=1, description="late_joins: at least this many joins in those days ..."
    )
    flag_late_joins_share: float = Field(
        default=0.5, gt=0, le=1, description="... and at least this share of the month's joins."
    )
    flag_dominant_share: float = Field(
        default=0.6, gt=0, le=1, description="dominant_member: one member's share of vitality."
    )
    flag_dominant_min_vitality: float = Field(
        default=2000.0, ge=0, description="dominant_member: only groups with this vitality."
    )
    flag_dominant_min_members: int = Field(
        default=3, ge=1, description="dominant_member: only groups with this many members."
    )

    def anomaly_thresholds(self) -> AnomalyThresholds:
        return AnomalyThresholds(
            message_rate_per_minute=self.flag_message_rate_per_minute,
            points_spike_floor=self.flag_points_spike_floor,
            points_spike_factor=self.flag_points_spike_factor,
            points_spike_history_days=self.flag_points_spike_history_days,
            lockstep_min_accounts=self.flag_lockstep_min_accounts,
            lockstep_min_events=self.flag_lockstep_min_events,
            late_joins_days=self.flag_late_joins_days,
            late_joins_min=self.flag_late_joins_min,
            late_joins_share=self.flag_late_joins_share,
            dominant_share=self.flag_dominant_share,
            dominant_min_vitality=self.flag_dominant_min_vitality,
            dominant_min_members=self.flag_dominant_min_members,
        )

    def retention(self) -> Retention:
        return Retention(
            live_horizon=timedelta(days=self.ledger_live_horizon_days),
            import_hold=timedelta(days=self.ledger_import_hold_days),
        )
