"""Scaled (SPEC §5, tribe chief): at each period's end, amount per unit × a metric, from a
minimum, capped — to the user, or to the group's owner.

Reads its metric and what its eligibility names (`group.month.*` for groups, where
`effective_active_members` exists only here; the user scopes otherwise); settles at period end.
An excluded user, group or group owner gets nothing (an excluded group still counts when
members of several groups are told apart: it exists).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import Field, model_validator

from services.rewards.domain import conditions
from services.rewards.domain.decisions import GrantDecision
from services.rewards.domain.exclusions import NONE, Exclusions
from services.rewards.domain.groups import GroupMonth, considered, effective_active_members
from services.rewards.domain.periods import Period, fulfil_by
from services.rewards.domain.rules.base import (
    Condition,
    MetricName,
    PeriodEndKind,
    RewardKind,
    RuleBase,
    RuleInputs,
    check_days_of_week,
    period_users,
    user_scopes,
)


class ScaledRule(RuleBase):
    """At each period's end: amount_per_unit × metric, from min_amount, capped; to the user or
    the group's owner."""

    kind: Literal["scaled"]
    entity: Literal["user", "group"] = "group"
    period: Literal["day", "week", "month", "year", "campaign"] = "month"
    eligibility: Condition | None = None
    metric: MetricName
    reward_kind: RewardKind
    amount_per_unit: int = Field(ge=1, le=1_000_000_000)
    min_amount: int = Field(default=1, ge=1, description="Smaller amounts grant nothing.")
    cap: int | None = Field(default=None, ge=1, description="Largest amount per grant.")
    fulfil_next_month_day: int = Field(default=10, ge=1, le=28)
    revoke_if_group_dissolved: bool = Field(
        default=False, description="Revoke an unfulfilled grant when its group is dissolved."
    )

    def scopes(self) -> tuple[str, ...]:
        return ("group.month",) if self.entity == "group" else user_scopes(self.period)

    @model_validator(mode="after")
    def _check(self) -> ScaledRule:
        if self.entity == "group" and self.period != "month":
            raise ValueError("group rules have period 'month'")
        if self.entity == "group" and self.days_of_week is not None:
            raise ValueError("days_of_week: group rules read whole months")
        check_days_of_week(self.days_of_week)
        if self.revoke_if_group_dissolved and self.entity != "group":
            raise ValueError("revoke_if_group_dissolved needs entity 'group'")
        self._check_conditions(
            eligibility=self.eligibility, metric=conditions.Leaf(self.metric, ">=", 0)
        )
        return self


def reads(rule: ScaledRule) -> frozenset[str]:
    return frozenset({rule.metric} | conditions.metrics_of(rule.eligibility))


def amount(rule: ScaledRule, units: float) -> int:
    """Whole units × amount per unit, capped; 0 below the minimum."""
    out = int(units) * rule.amount_per_unit
    if rule.cap is not None:
        out = min(out, rule.cap)
    return out if out >= rule.min_amount else 0


def group_grants(
    rule: ScaledRule,
    period: Period,
    groups: Iterable[GroupMonth],
    active_users: set[str],
    excluded: Exclusions = NONE,
) -> list[GrantDecision]:
    """Credit to the owners of the considered `groups`; a member counts as effective in one of
    them only (SPEC §1)."""
    groups = list(groups)
    effective = effective_active_members(groups, active_users)
    out: list[GrantDecision] = []
    for g in sorted(groups, key=lambda x: x.group_id):
        if excluded.group(g.group_id) or excluded.user(g.owner_id):
            continue
        values = g.values(effective=effective[g.group_id])
        if rule.eligibility is not None and not conditions.evaluate(rule.eligibility, values):
            continue
        units = values.get(rule.metric, 0.0)
        granted = amount(rule, units)
        if granted == 0 or not g.owner_id:
            continue
        why = {
            "group_id": g.group_id,
            "metric": rule.metric,
            "units": units,
            "amount_per_unit": rule.amount_per_unit,
            "cap": rule.cap,
            "conditions": conditions.explain(rule.eligibility, values) if rule.eligibility else [],
        }
        out.append(
            GrantDecision(
                rule.id,
                "owner",
                g.owner_id,
                period.label,
                ((rule.reward_kind, granted),),
                fulfil_by(period.last_day, rule.fulfil_next_month_day),
                g.group_id,
                why,
                rule.revoke_if_group_dissolved,
            )
        )
    return out


def user_grants(
    rule: ScaledRule,
    period: Period,
    users: Mapping[str, Mapping[str, float]],
    excluded: Exclusions = NONE,
) -> list[GrantDecision]:
    out: list[GrantDecision] = []
    for user_id in sorted(users):
        if excluded.user(user_id):
            continue
        values = users[user_id]
        if rule.eligibility is not None and not conditions.evaluate(rule.eligibility, values):
            continue
        granted = amount(rule, values.get(rule.metric, 0.0))
        if granted:
            why = {"metric": rule.metric, "units": values.get(rule.metric, 0.0)}
            out.append(
                GrantDecision(
                    rule.id,
                    "user",
                    user_id,
                    period.label,
                    ((rule.reward_kind, granted),),
                    fulfil_by(period.last_day, rule.fulfil_next_month_day),
                    None,
                    why,
                )
            )
    return out


async def settle(rule: ScaledRule, period: Period, inputs: RuleInputs) -> list[GrantDecision]:
    excluded = await inputs.exclusions()
    if rule.entity == "user":
        users = await period_users(inputs, period, reads(rule), rule.days_of_week)
        return user_grants(rule, period, users, excluded)
    groups = considered(await inputs.groups(period), period, await inputs.enrolled())
    active = await inputs.active_users(period, (g.group_id for g in groups))
    return group_grants(rule, period, groups, active, excluded)


KIND = PeriodEndKind(name="scaled", model=ScaledRule, reads=reads, settle=settle)
