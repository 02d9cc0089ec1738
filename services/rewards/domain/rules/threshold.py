"""Threshold (SPEC §5): fires in real time when its condition holds on a user's day or month,
or a group's month — once per period, or once per campaign.

Reads what its condition names; never settles at period end: it is evaluated on every batch
of new metric values, and a simulation replays a past range's stored values. An excluded user,
group or group owner never fires it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Literal

from pydantic import Field, model_validator

from services.rewards.domain import conditions
from services.rewards.domain.decisions import GrantDecision
from services.rewards.domain.exclusions import Exclusions
from services.rewards.domain.groups import GroupMonth
from services.rewards.domain.periods import (
    CAMPAIGN_PERIOD,
    Period,
    month_period,
    months_between,
    period_on,
)
from services.rewards.domain.rules.base import (
    Condition,
    NewValues,
    RealTimeKind,
    Reward,
    RuleBase,
    RuleInputs,
    UserKey,
    fulfilment,
    reward_items,
    user_scopes,
)


class ThresholdRule(RuleBase):
    """Fires in real time when the condition holds: once per period, or once per campaign."""

    kind: Literal["threshold"]
    entity: Literal["user", "group"] = "user"
    period: Literal["day", "month"] = "day"
    once: Literal["period", "campaign"] = "period"
    condition: Condition
    rewards: list[Reward] = Field(min_length=1, max_length=8)

    def scopes(self) -> tuple[str, ...]:
        if self.entity == "group":
            return ("group.month",)
        # A day threshold fires when the user's day changes; the month is a separate record
        # that may change later without re-evaluating the day: use user.campaign instead.
        return tuple(
            s for s in user_scopes(self.period) if (self.period, s) != ("day", "user.month")
        )

    @model_validator(mode="after")
    def _check(self) -> ThresholdRule:
        if self.entity == "group" and self.period != "month":
            raise ValueError("group thresholds have period 'month'")
        if "group.month.effective_active_members" in conditions.metrics_of(self.condition):
            raise ValueError(
                "condition: group.month.effective_active_members exists only at settlement"
            )
        self._check_conditions(condition=self.condition)
        return self


def reads(rule: ThresholdRule) -> frozenset[str]:
    return frozenset(conditions.metrics_of(rule.condition))


def decision(
    rule: ThresholdRule,
    period_label: str,
    fired_in: Period,
    user_id: str,
    values: Mapping[str, float],
    group_id: str | None = None,
) -> GrantDecision | None:
    """The grant a threshold earns now, if its condition holds on `values`."""
    if not conditions.evaluate(rule.condition, values):
        return None
    why = {"fired_in": fired_in.label, "conditions": conditions.explain(rule.condition, values)}
    return GrantDecision(
        rule.id,
        "owner" if rule.entity == "group" else "user",
        user_id,
        period_label,
        reward_items(rule.rewards),
        fulfilment(rule.rewards, fired_in.first_day),
        group_id,
        why,
    )


def _label(rule: ThresholdRule, period: Period) -> str:
    return CAMPAIGN_PERIOD if rule.once == "campaign" else period.label


async def _group_decisions(
    rule: ThresholdRule, groups: list[GroupMonth], inputs: RuleInputs
) -> list[GrantDecision]:
    enrolled, excluded = await inputs.enrolled(), await inputs.exclusions()
    out: list[GrantDecision] = []
    for g in sorted(groups, key=lambda x: (x.month or date.min, x.group_id)):
        if g.month is None or excluded.group(g.group_id) or excluded.user(g.owner_id):
            continue
        period = month_period(g.month, inputs.tz)
        if not inputs.window.overlaps(period) or not g.owner_id:
            continue
        if not g.standing_at(period.end) or (enrolled is not None and g.group_id not in enrolled):
            continue
        d = decision(rule, _label(rule, period), period, g.owner_id, g.values(), g.group_id)
        if d is not None:
            out.append(d)
    return out


async def evaluate(rule: ThresholdRule, new: NewValues, inputs: RuleInputs) -> list[GrantDecision]:
    """The grants the new values earn, in day (or month) order."""
    if rule.entity == "group":
        return await _group_decisions(rule, list(new.groups), inputs) if new.groups else []
    base = new.user_days if rule.period == "day" else new.user_months
    periods = {k: period_on(k[1], rule.period, inputs.tz) for k in base}
    excluded: Exclusions = await inputs.exclusions()
    inside: dict[UserKey, Mapping[str, float]] = {
        k: v
        for k, v in base.items()
        if inputs.window.overlaps(periods[k]) and not excluded.user(k[0])
    }
    if not inside:
        return []
    values = await inputs.with_scopes(rule.period, inside, reads(rule))
    out: list[GrantDecision] = []
    for key in sorted(inside, key=lambda k: (k[1], k[0])):
        period = periods[key]
        d = decision(rule, _label(rule, period), period, key[0], values[key])
        if d is not None:
            out.append(d)
    return out


async def replay(
    rule: ThresholdRule, first: date, last: date, now: datetime, inputs: RuleInputs
) -> list[GrantDecision]:
    """What the rule would have granted on the stored values of [first, last] (simulation):
    every day in it, every month in it, the groups of its months that have ended."""
    months = months_between(first, last)
    if rule.entity == "group":
        groups: list[GroupMonth] = []
        for m in months:
            period = month_period(m, inputs.tz)
            if period.end <= now:
                groups += await inputs.groups(period)
        return await evaluate(rule, NewValues(groups=groups), inputs)
    if rule.period == "month":
        user_months: dict[UserKey, Mapping[str, float]] = {}
        for m in months:
            rows = await inputs.user_rows(month_period(m, inputs.tz))
            user_months |= {(u, m): v for u, v in rows.items()}
        return await evaluate(rule, NewValues(user_months=user_months), inputs)
    user_days = await inputs.user_days_between(first, last)
    return await evaluate(rule, NewValues(user_days=user_days), inputs)


KIND = RealTimeKind(
    name="threshold", model=ThresholdRule, reads=reads, evaluate=evaluate, replay=replay
)
