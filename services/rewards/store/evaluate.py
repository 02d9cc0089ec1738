"""Load the metric values a rule needs and ask the domain for decisions.

Shared by real-time thresholds (consumer), settlement and simulation, so that a simulated
version decides exactly as the live one would on the same stored values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain import conditions, draws
from services.rewards.domain.periods import (
    CAMPAIGN_PERIOD,
    Period,
    day_period,
    days_in_window,
    month_period,
)
from services.rewards.domain.rules import (
    CampaignDefinition,
    LotteryRule,
    RankRule,
    ScaledRule,
    ThresholdRule,
    Weights,
)
from services.rewards.domain.settlement import (
    GrantDecision,
    GroupMonth,
    lottery_entries,
    lottery_grants,
    rank_grants,
    rank_winners,
    settle_scaled_groups,
    settle_scaled_users,
    threshold_decision,
)
from services.rewards.store import snapshots
from services.rewards.store.campaigns import enrolled_groups

Values = dict[str, float]
# (campaign_id, rule, period, entries) -> (seed, winners); settlement freezes a real draw,
# simulation draws with a stand-in seed.
DrawFn = Callable[[str, LotteryRule, Period, list[str]], Any]


def _prev_month(month_first: date) -> date:
    return (month_first - timedelta(days=1)).replace(day=1)


def _scopes(rule_metrics: Iterable[str]) -> set[str]:
    return {m.rpartition(".")[0] for m in rule_metrics}


def _fields(rule_metrics: Iterable[str], scope: str) -> set[str]:
    return {m.rpartition(".")[2] for m in rule_metrics if m.rpartition(".")[0] == scope}


def _prefixed(scope: str, values: Mapping[str, float]) -> Values:
    return {f"{scope}.{k}": v for k, v in values.items()}


async def user_values(
    session: AsyncSession,
    base: Mapping[tuple[str, date], Mapping[str, float]],
    grain: str,
    metrics: set[str],
    definition: CampaignDefinition,
    tz: ZoneInfo,
) -> dict[tuple[str, date], Values]:
    """Values of each (user, day or month-first-day) in `base`, with the scopes `metrics` use."""
    scopes = _scopes(metrics)
    out: dict[tuple[str, date], Values] = {
        key: _prefixed(f"user.{grain}", vals) for key, vals in base.items()
    }
    if grain == "day" and "user.month" in scopes:
        months = await snapshots.user_months_of(session, ((u, d.replace(day=1)) for u, d in base))
        for (u, d), vals in out.items():
            vals.update(_prefixed("user.month", months.get((u, d.replace(day=1)), {})))
    if "user.prev_month" in scopes:
        prev = await snapshots.user_months_of(
            session,
            ((u, _prev_month(d.replace(day=1))) for u, d in base),
            _fields(metrics, "user.prev_month"),
        )
        for (u, d), vals in out.items():
            vals.update(
                _prefixed("user.prev_month", prev.get((u, _prev_month(d.replace(day=1))), {}))
            )
    if "user.campaign" in scopes:
        first, last = days_in_window(definition.starts_at, definition.ends_at, tz)
        sums = await snapshots.window_sums(
            session, (u for u, _ in base), first, last, _fields(metrics, "user.campaign")
        )
        for (u, _), vals in out.items():
            vals.update(_prefixed("user.campaign", sums.get(u, {})))
    return out


def _in_window(period: Period, definition: CampaignDefinition) -> bool:
    return period.start < definition.ends_at and period.end > definition.starts_at


async def threshold_decisions(
    session: AsyncSession,
    campaign_id: str,
    definition: CampaignDefinition,
    rule: ThresholdRule,
    user_days: Mapping[tuple[str, date], Mapping[str, float]],
    user_months: Mapping[tuple[str, date], Mapping[str, float]],
    groups: Iterable[GroupMonth],
    tz: ZoneInfo,
) -> list[GrantDecision]:
    """Grants a threshold rule earns on these (new) values, in day order."""
    out: list[GrantDecision] = []
    if rule.entity == "group":
        enrolled = (
            await enrolled_groups(session, campaign_id) if definition.enrollment_required else None
        )
        for g in sorted(groups, key=lambda x: (x.month or date.min, x.group_id)):
            if g.month is None:
                continue
            period = month_period(g.month, tz)
            if not _in_window(period, definition) or not g.owner_id:
                continue
            if not g.standing_at(period.end) or (
                enrolled is not None and g.group_id not in enrolled
            ):
                continue
            label = CAMPAIGN_PERIOD if rule.once == "campaign" else period.label
            d = threshold_decision(rule, label, period, g.owner_id, g.values(Weights()), g.group_id)
            if d is not None:
                out.append(d)
        return out
    base = user_days if rule.period == "day" else user_months
    make = day_period if rule.period == "day" else month_period
    inside = {k: v for k, v in base.items() if _in_window(make(k[1], tz), definition)}
    if not inside:
        return out
    values = await user_values(
        session, inside, rule.period, conditions.metrics_of(rule.condition), definition, tz
    )
    for user_id, day in sorted(inside, key=lambda k: (k[1], k[0])):
        period = make(day, tz)
        label = CAMPAIGN_PERIOD if rule.once == "campaign" else period.label
        d = threshold_decision(rule, label, period, user_id, values[(user_id, day)])
        if d is not None:
            out.append(d)
    return out


async def period_decisions(
    session: AsyncSession,
    campaign_id: str,
    definition: CampaignDefinition,
    rule: RankRule | LotteryRule | ScaledRule,
    period: Period,
    tz: ZoneInfo,
    draw: DrawFn,
) -> list[GrantDecision]:
    """What a period-end rule grants for one period, from stored values."""
    enrolled = (
        await enrolled_groups(session, campaign_id) if definition.enrollment_required else None
    )
    if isinstance(rule, RankRule):
        # Members only of the winners: a month has 100k groups, its winners a few hundred.
        groups = await snapshots.group_months_in(session, period.first_day, members=False)
        winners = rank_winners(rule, period, groups, enrolled)
        members: dict[str, tuple[str, ...]] = {}
        if rule.member_reward is not None and winners:
            with_members = await snapshots.group_months_in(
                session, period.first_day, only=[w.group.group_id for w in winners]
            )
            members = {g.group_id: g.member_ids for g in with_members}
        return rank_grants(rule, period, winners, members)
    if isinstance(rule, ScaledRule) and rule.entity == "group":
        groups = await snapshots.group_months_in(session, period.first_day)
        considered = [
            g
            for g in groups
            if g.standing_at(period.end) and (enrolled is None or g.group_id in enrolled)
        ]
        active = await snapshots.active_members(
            session, period.first_day, (g.group_id for g in considered)
        )
        return settle_scaled_groups(rule, period, considered, None, active)
    metrics = (
        conditions.metrics_of(rule.eligibility)
        | ({rule.tickets} if isinstance(rule, LotteryRule) and rule.tickets else set())
        | ({rule.metric} if isinstance(rule, ScaledRule) else set())
    )
    # Only the fields the rule reads; a stored row with none of them still enters (as zeros).
    load = snapshots.user_days_on if rule.period == "day" else snapshots.user_months_in
    rows = await load(session, period.first_day, _fields(metrics, f"user.{rule.period}"))
    base = {(u, period.first_day): v for u, v in rows.items()}
    values = await user_values(session, base, rule.period, metrics, definition, tz)
    by_user = {u: v for (u, _), v in values.items()}
    if isinstance(rule, ScaledRule):
        return settle_scaled_users(rule, period, by_user)
    entries = lottery_entries(rule, by_user)
    drawn: list[str] = await draw(campaign_id, rule, period, entries)
    return lottery_grants(rule, period, drawn)


def simulated_draw(seed_of: Mapping[tuple[str, str], str]) -> DrawFn:
    """Draw with the revealed seed if the real draw happened, else a stand-in seed: a
    simulation must never use (and so reveal) a seed that is still secret."""

    async def run(
        campaign_id: str, rule: LotteryRule, period: Period, entries: list[str]
    ) -> list[str]:
        seed = seed_of.get((rule.id, period.label)) or draws.commitment(
            f"simulation:{campaign_id}:{rule.id}:{period.label}"
        )
        return draws.draw(seed, entries, rule.winners, rule.repeat_winners)

    return run
