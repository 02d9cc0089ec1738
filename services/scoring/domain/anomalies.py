"""Anomaly flags on user-days and group-months (SPEC §14): signs of chart-rigging for an
approver to look at, each rule its own pure function over aggregates scoring keeps exactly
(store/anomalies.py), so a flag is a function of stored state — the same under any arrival
order, replay or late event. docs/metrics.md ("Anomaly flags") gives each measure and threshold.

A flag is a question for a person, not a verdict: nothing is excluded because of one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.records import AnomalyFlag


@dataclass(frozen=True, slots=True)
class AnomalyThresholds:
    """Where each rule fires (ScoringSettings.anomaly_thresholds, env `SCORING_FLAG_*`)."""

    message_rate_per_minute: int = 60
    points_spike_floor: int = 1000
    points_spike_factor: float = 10.0
    points_spike_history_days: int = 28
    lockstep_min_accounts: int = 5
    lockstep_min_events: int = 10
    late_joins_days: int = 4
    late_joins_min: int = 10
    late_joins_share: float = 0.5
    dominant_share: float = 0.6
    dominant_min_vitality: float = 2000.0
    dominant_min_members: int = 3


@dataclass(frozen=True, slots=True)
class UserDayInputs:
    """What the user-day rules read, for one (user, local day)."""

    peak_minute_messages: int = 0  # most messages (any client) in one clock minute of the day
    points_delta: int = 0
    points_history: int = 0  # sum of the days' points_delta over the history window before it
    history_days: int = 28  # that window's length in days
    lockstep_source: str | None = None  # the source of the largest identical-fingerprint set
    lockstep_accounts: int = 0  # how many users share the fingerprint (this one included)
    lockstep_events: int = 0  # events each of them sent from that source that day


@dataclass(frozen=True, slots=True)
class GroupMonthInputs:
    """What the group-month rules read, for one (group, month)."""

    joins: int = 0  # joins (group_join, and the creator's group_created) in the month
    late_joins: int = 0  # of those, in the month's last `late_joins_days` local days
    late_days: int = 4
    members: int = 0  # as of the month's end
    vitality: float = 0.0  # default profile weights
    top_member_id: str | None = None
    top_member_contribution: float = 0.0


UserDayRule = Callable[[UserDayInputs, AnomalyThresholds], AnomalyFlag | None]
GroupMonthRule = Callable[[GroupMonthInputs, AnomalyThresholds], AnomalyFlag | None]


def message_rate(x: UserDayInputs, t: AnomalyThresholds) -> AnomalyFlag | None:
    """Peak messages in one clock minute at or above what a person can type (one a second)."""
    if x.peak_minute_messages < t.message_rate_per_minute:
        return None
    return AnomalyFlag(
        name="message_rate",
        reason=f"{x.peak_minute_messages} messages within one minute; a person types fewer "
        f"than {t.message_rate_per_minute}",
        values={"messages_per_minute": x.peak_minute_messages, "limit": t.message_rate_per_minute},
    )


def points_spike(x: UserDayInputs, t: AnomalyThresholds) -> AnomalyFlag | None:
    """A day's points far above the user's own recent days: > max(floor, factor × mean)."""
    mean = max(0, x.points_history) / max(1, x.history_days)
    limit = max(float(t.points_spike_floor), t.points_spike_factor * mean)
    if x.points_delta <= limit:
        return None
    return AnomalyFlag(
        name="points_spike",
        reason=f"{x.points_delta} points in one day against a daily mean of {mean:.1f} over "
        f"the {x.history_days} days before",
        values={
            "points": x.points_delta,
            "history_daily_mean": round(mean, 2),
            "limit": round(limit, 2),
        },
    )


def lockstep(x: UserDayInputs, t: AnomalyThresholds) -> AnomalyFlag | None:
    """Several accounts whose day from one source is identical: same number of events at the
    same minutes (the sum of their minutes matches), as a script driving them would make."""
    if (
        x.lockstep_source is None
        or x.lockstep_accounts < t.lockstep_min_accounts
        or x.lockstep_events < t.lockstep_min_events
    ):
        return None
    return AnomalyFlag(
        name="lockstep",
        reason=f"{x.lockstep_accounts} accounts sent the same {x.lockstep_events} events at the "
        "same minutes through one source",
        values={
            "accounts": x.lockstep_accounts,
            "events": x.lockstep_events,
            "source": x.lockstep_source[:64],
        },
    )


def late_joins(x: GroupMonthInputs, t: AnomalyThresholds) -> AnomalyFlag | None:
    """Joins bunched in the month's last days, just before the leaderboard closes — counting
    joins a client sent later still but dated into the month (heard late)."""
    if x.joins == 0 or x.late_joins < t.late_joins_min:
        return None
    share = x.late_joins / x.joins
    if share < t.late_joins_share:
        return None
    return AnomalyFlag(
        name="late_joins",
        reason=f"{x.late_joins} of the month's {x.joins} joins came in its last {x.late_days} "
        "days or were sent after them, backdated",
        values={"late_joins": x.late_joins, "joins": x.joins, "share": round(share, 3)},
    )


def dominant_member(x: GroupMonthInputs, t: AnomalyThresholds) -> AnomalyFlag | None:
    """One member contributes most of a group's vitality, when the vitality is worth a prize."""
    if (
        x.top_member_id is None
        or x.members < t.dominant_min_members
        or x.vitality < t.dominant_min_vitality
    ):
        return None
    share = x.top_member_contribution / x.vitality
    if share < t.dominant_share:
        return None
    return AnomalyFlag(
        name="dominant_member",
        reason=f"member {x.top_member_id[:64]} contributes {share:.0%} of the group's vitality "
        f"({x.vitality:g})",
        values={
            "member_id": x.top_member_id[:64],
            "share": round(share, 3),
            "vitality": x.vitality,
        },
    )


USER_DAY_RULES: tuple[UserDayRule, ...] = (message_rate, points_spike, lockstep)
GROUP_MONTH_RULES: tuple[GroupMonthRule, ...] = (late_joins, dominant_member)
FLAG_NAMES = ("message_rate", "points_spike", "lockstep", "late_joins", "dominant_member")


def user_day_flags(x: UserDayInputs, t: AnomalyThresholds) -> list[AnomalyFlag]:
    return [f for rule in USER_DAY_RULES if (f := rule(x, t)) is not None]


def group_month_flags(x: GroupMonthInputs, t: AnomalyThresholds) -> list[AnomalyFlag]:
    return [f for rule in GROUP_MONTH_RULES if (f := rule(x, t)) is not None]
