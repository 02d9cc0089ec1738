"""Anomaly flags (SPEC §14): keep their inputs in the batch's transaction, and flag user days
and group months from stored state for the changelog and the reads (domain/anomalies.py).

Flags are computed when a record is rendered, never stored as a verdict, so they always match
the stored aggregates; what a batch changes marks every record whose flags may change with it:
the user days it wrote, the days whose points history it changed, every user sharing a
fingerprint it changed, and the group months of its joins.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from zoneinfo import ZoneInfo

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.anomalies import (
    FLAG_NAMES,
    AnomalyThresholds,
    group_month_flags,
    user_day_flags,
)
from services.scoring.domain.batch import BatchPlan
from services.scoring.domain.periods import month_of
from services.scoring.domain.sessions import UserDayKey
from services.scoring.domain.vitality import DEFAULT_PROFILE, Weights
from services.scoring.store import anomalies, profiles
from services.scoring.store.changelog import group_month_key, user_day_key
from shared.records import AnomalyFlag

ANOMALY_FLAGS = Counter(
    "engage_anomaly_flags_total",
    "Anomaly flags raised on published metric records (each record and flag counted once).",
    ["flag"],
)
for _name in FLAG_NAMES:
    ANOMALY_FLAGS.labels(_name)


async def keep_inputs(
    session: AsyncSession, plan: BatchPlan, tz: ZoneInfo, t: AnomalyThresholds
) -> list[str]:
    """Add the batch to what the flags read; return the changelog keys whose flags it may
    change beyond the records it wrote."""
    await anomalies.add_minute_messages(session, plan.minute_messages, tz)
    await anomalies.add_join_days(session, plan.join_days)
    lockstep = await anomalies.add_source_days(session, plan.source_days)
    points_changed = [k for k, d in plan.user_day.items() if d.points_delta]
    later = await anomalies.days_after(session, points_changed, t.points_spike_history_days)
    return [
        *(user_day_key(u, d) for u, d in {*lockstep, *later}),
        *(group_month_key(g, month_of(d)) for g, d, _ in plan.join_days),
    ]


async def user_day_flags_of(
    session: AsyncSession, keys: Sequence[UserDayKey], t: AnomalyThresholds
) -> dict[UserDayKey, list[AnomalyFlag]]:
    inputs = await anomalies.user_day_inputs(session, keys, t.points_spike_history_days)
    return {key: user_day_flags(x, t) for key, x in inputs.items()}


async def group_month_flags_of(
    session: AsyncSession, keys: Sequence[tuple[str, date]], tz: ZoneInfo, t: AnomalyThresholds
) -> dict[tuple[str, date], list[AnomalyFlag]]:
    """Flags of these group months, vitality under the default profile (as published)."""
    w = await profiles.weights_of(session, DEFAULT_PROFILE) or Weights()
    inputs = await anomalies.group_month_inputs(session, keys, tz, w, t.late_joins_days)
    return {key: group_month_flags(x, t) for key, x in inputs.items()}


async def count_published(session: AsyncSession, flagged: dict[str, list[AnomalyFlag]]) -> None:
    """Count each (record, flag) the first time it is published. Counted inside the relay's
    transaction: a pass that fails after this counts again on its retry (rare, and only up)."""
    pairs = [(key, f.name) for key, flags in flagged.items() for f in flags]
    for name in await anomalies.remember_published(session, pairs):
        ANOMALY_FLAGS.labels(name).inc()
