"""Threshold (SPEC §5, §10): fires in real time when its condition holds on a user's day — with
the user's sums over the week, month, year, campaign or the rule's own period up to that day
(domain/rules/sums.py) — or on a group's month; once per period, or once per campaign; at most
`max_grants` winners per period and/or per campaign, first come by the day the condition was
met, ties by user id.

Reads what its condition names; never settles at period end: it is evaluated on every batch of
new day values, and a simulation evaluates each day of its range with the data up to that day
(SPEC §9), so it fires on the day it would have fired live. An excluded user, group or group
owner never fires it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
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
    fulfil_by,
    month_period,
    months_between,
)
from services.rewards.domain.rules.base import (
    Condition,
    Model,
    NewValues,
    RealTimeKind,
    Reward,
    RuleBase,
    RuleInputs,
    check_days_of_week,
    fields_in,
    reward_items,
)
from services.rewards.domain.rules.sums import DayRow, SumPlan, running_values

USER_SCOPES = (
    "user.day", "user.week", "user.month", "user.year", "user.campaign", "user.period",
    "user.prev_month", "user",
)  # fmt: skip
FIRST_COME = "by the day the condition was met, then user id"


class MaxGrants(Model):
    """At most this many winners (SPEC §10 Caps on winners); budgets stay campaign-wide."""

    per_period: int | None = Field(default=None, ge=1, le=100_000_000)
    per_campaign: int | None = Field(default=None, ge=1, le=100_000_000)

    @model_validator(mode="after")
    def _some(self) -> MaxGrants:
        if self.per_period is None and self.per_campaign is None:
            raise ValueError("max_grants needs per_period, per_campaign or both")
        return self


class ThresholdRule(RuleBase):
    """Fires in real time when the condition holds: once per period, or once per campaign."""

    kind: Literal["threshold"]
    entity: Literal["user", "group"] = "user"
    period: Literal["day", "week", "month", "year", "campaign"] = "day"
    once: Literal["period", "campaign"] = "period"
    condition: Condition
    rewards: list[Reward] = Field(min_length=1, max_length=8)
    max_grants: MaxGrants | None = Field(
        default=None,
        description="Most winners per period and/or per campaign: first come by the day the "
        "condition was met, ties by user id (the grant's explanation records its place).",
    )

    def scopes(self) -> tuple[str, ...]:
        return ("group.month",) if self.entity == "group" else USER_SCOPES

    @property
    def label_grain(self) -> str:
        return "campaign" if self.once == "campaign" else self.period

    @model_validator(mode="after")
    def _check(self) -> ThresholdRule:
        if self.entity == "group" and self.period != "month":
            raise ValueError("group thresholds have period 'month'")
        if self.entity == "group" and self.days_of_week is not None:
            raise ValueError("days_of_week: group thresholds read whole months")
        check_days_of_week(self.days_of_week)
        if "group.month.effective_active_members" in conditions.metrics_of(self.condition):
            raise ValueError(
                "condition: group.month.effective_active_members exists only at settlement"
            )
        if (
            self.max_grants is not None
            and self.max_grants.per_period is not None
            and self.label_grain == "campaign"
        ):
            raise ValueError("max_grants.per_period: this rule grants once per campaign")
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
    fired_on: date | None = None,
) -> GrantDecision | None:
    """The grant a threshold earns now, if its condition holds on `values`."""
    if not conditions.evaluate(rule.condition, values):
        return None
    why: dict[str, object] = {
        "fired_in": fired_in.label,
        "conditions": conditions.explain(rule.condition, values),
    }
    if fired_on is not None:
        why["fired_on"] = fired_on.isoformat()
    day = fired_on if fired_on is not None else fired_in.last_day
    return GrantDecision(
        rule.id,
        "owner" if rule.entity == "group" else "user",
        user_id,
        period_label,
        reward_items(rule.rewards),
        max(fulfil_by(day, r.fulfil_next_month_day) for r in rule.rewards),
        group_id,
        why,
    )


def _label(rule: ThresholdRule, period: Period) -> str:
    return CAMPAIGN_PERIOD if rule.once == "campaign" else period.label


def first_come(
    rule: ThresholdRule,
    decisions: Sequence[GrantDecision],
    granted_per_period: Mapping[str, int],
    granted_in_campaign: int,
) -> list[GrantDecision]:
    """The decisions that still fit under `max_grants`, given the winners the ledger already
    holds: first come by the day the condition was met, ties by user id; each kept decision's
    explanation records its place."""
    cap = rule.max_grants
    if cap is None:
        return list(decisions)
    per_period: dict[str, int] = defaultdict(int, granted_per_period)
    total = granted_in_campaign
    out: list[GrantDecision] = []
    for d in sorted(decisions, key=_first_come_key):
        if cap.per_period is not None and per_period[d.period] >= cap.per_period:
            continue
        if cap.per_campaign is not None and total >= cap.per_campaign:
            continue
        per_period[d.period] += 1
        total += 1
        place = {"order": FIRST_COME, "place_in_period": per_period[d.period],
                 "place_in_campaign": total, **cap.model_dump(exclude_none=True)}  # fmt: skip
        why = {**d.explanation, "max_grants": place}
        out.append(replace(d, explanation=why))
    return out


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


def plan_of(rule: ThresholdRule, inputs: RuleInputs) -> SumPlan:
    return SumPlan.of(reads(rule), rule.period, rule.days_of_week, inputs.window, inputs.tz)


async def user_decisions(
    rule: ThresholdRule,
    inputs: RuleInputs,
    first: date,
    last: date,
    users: Sequence[str] | None = None,
    since: Mapping[str, date] | None = None,
    capped_here: bool = False,
) -> list[GrantDecision]:
    """Every user's days in [first, last] (only `users`; from `since[user]` on) evaluated in
    order, each with the data up to that day: the first day of each period whose values meet
    the condition fires (SPEC §9); in day order, then user id. `capped_here`: keep only the
    decisions that can win under `max_grants` on an empty ledger (a backtest: its memory is
    then bounded by the caps, not by the users who qualify)."""
    plan = plan_of(rule, inputs)
    w_first, w_last = inputs.window.days(inputs.tz)
    first, last = max(first, w_first), min(last, w_last)
    if first > last:
        return []
    metrics = reads(rule)
    fields = plan.source_fields() | fields_in(metrics, "user.day")
    excluded: Exclusions = await inputs.exclusions()
    out = Earliest(rule.max_grants if capped_here else None)
    chunk: list[tuple[str, Sequence[DayRow], list[date]]] = []
    async for user_id, rows in inputs.user_series(plan.earliest(first), last, fields, users):
        if excluded.user(user_id):
            continue
        start = max(first, since.get(user_id, first)) if since else first
        days = [d for d, _ in rows if start <= d <= last and plan.counts(d)]
        if days:
            chunk.append((user_id, rows, days))
        if len(chunk) >= CHUNK:
            out.add(await _chunk_decisions(rule, inputs, plan, metrics, chunk))
            chunk = []
    out.add(await _chunk_decisions(rule, inputs, plan, metrics, chunk))
    return out.decisions()


CHUNK = 2000  # users whose non-summed values are read together


def _first_come_key(d: GrantDecision) -> tuple[str, str]:
    return (str(d.explanation.get("fired_on", "")), d.user_id)


class Earliest:
    """Decisions in first-come order; under a cap, only those that can still win: per period
    label the earliest `per_period`, or overall the earliest `per_campaign` (`first_come`
    then applies both caps to what is left)."""

    def __init__(self, cap: MaxGrants | None) -> None:
        self.limit = None if cap is None else (cap.per_period or cap.per_campaign)
        self.by_period = cap is not None and cap.per_period is not None
        self.buckets: dict[str, list[GrantDecision]] = defaultdict(list)

    def add(self, decisions: Sequence[GrantDecision]) -> None:
        for d in decisions:
            bucket = self.buckets[d.period if self.by_period else ""]
            bucket.append(d)
            if self.limit is not None and len(bucket) >= 2 * self.limit:
                bucket.sort(key=_first_come_key)
                del bucket[self.limit :]

    def decisions(self) -> list[GrantDecision]:
        out = [d for b in self.buckets.values() for d in b]
        out.sort(key=_first_come_key)
        return out


async def _chunk_decisions(
    rule: ThresholdRule,
    inputs: RuleInputs,
    plan: SumPlan,
    metrics: frozenset[str],
    chunk: list[tuple[str, Sequence[DayRow], list[date]]],
) -> list[GrantDecision]:
    """Each user's evaluated days in order; the first day of each period that meets the
    condition fires."""
    if not chunk:
        return []
    context = await inputs.user_context(((u, d) for u, _, days in chunk for d in days), metrics)
    out: list[GrantDecision] = []
    for user_id, rows, days in chunk:
        fired: set[str] = set()
        for day, values in running_values(plan, rows, days):
            period = inputs.window.period_on(day, rule.period, inputs.tz)
            label = _label(rule, period)
            if label in fired:
                continue
            values |= context.get((user_id, day), {})
            d = decision(rule, label, period, user_id, values, fired_on=day)
            if d is not None:
                fired.add(label)
                out.append(d)
    return out


async def evaluate(rule: ThresholdRule, new: NewValues, inputs: RuleInputs) -> list[GrantDecision]:
    """The grants the new values earn, in day order: each user's new days are evaluated with
    the data up to each of them, and so are the user's later stored days of the same periods
    (a late day changes their sums)."""
    if rule.entity == "group":
        return await _group_decisions(rule, list(new.groups), inputs) if new.groups else []
    if not new.user_days:
        return []
    since: dict[str, date] = {}
    for u, d in new.user_days:
        since[u] = min(since.get(u, d), d)
    first = min(since.values())
    last_new = max(d for _, d in new.user_days)
    w_first, w_last = inputs.window.days(inputs.tz)
    if last_new < w_first or first > w_last:
        return []
    # Every later stored day whose grant the new days may change: to the end of the last
    # new day's period, or of the window for a once-per-campaign rule.
    end = inputs.window.period_on(min(max(last_new, w_first), w_last), rule.period, inputs.tz)
    last = w_last if rule.once == "campaign" else end.last_day
    return await user_decisions(rule, inputs, first, last, sorted(since), since)


async def replay(
    rule: ThresholdRule, first: date, last: date, now: datetime, inputs: RuleInputs
) -> list[GrantDecision]:
    """What the rule would have granted over [first, last] (simulation, SPEC §9): each day
    evaluated with the data up to that day, never after `last`; groups of months that ended."""
    if rule.entity == "group":
        groups: list[GroupMonth] = []
        for m in months_between(first, last):
            period = month_period(m, inputs.tz)
            if period.end <= now:
                groups += await inputs.groups(period)
        return await evaluate(rule, NewValues(groups=groups), inputs)
    return await user_decisions(rule, inputs, first, last, capped_here=True)


def capped(rule: ThresholdRule) -> bool:
    return rule.max_grants is not None


KIND = RealTimeKind(
    name="threshold",
    model=ThresholdRule,
    reads=reads,
    evaluate=evaluate,
    replay=replay,
    capped=capped,
    cap=first_come,
)
