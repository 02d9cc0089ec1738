"""Rank (SPEC §5, §4 order): at each month's end the top N groups of each partition by vitality
under the rule's weights; a prize to each winner's owner, a reward to each of its members.

Reads `group.month.*` (vitality, active members for ties, what the eligibility names); settles
at period end. An excluded group (domain/exclusions.py) is passed over and the next one wins;
an excluded owner or member gets nothing. The winners' explanation names both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from services.rewards.domain import conditions
from services.rewards.domain.decisions import GrantDecision
from services.rewards.domain.exclusions import NONE, Exclusions
from services.rewards.domain.groups import GroupMonth, Weights, considered
from services.rewards.domain.periods import Period, month_period, months_between
from services.rewards.domain.rules.base import (
    Condition,
    PeriodEndKind,
    Reward,
    RuleBase,
    RuleInputs,
    fulfilment,
    reward_items,
)


class RankRule(RuleBase):
    """Top N groups per partition by vitality (SPEC §4 order) at the end of each month."""

    kind: Literal["rank"]
    period: Literal["month", "year"] = Field(
        default="month", description="A year ranks the sum of its months (SPEC §10)."
    )
    partition: Literal["province", "none"] = "province"
    top: int = Field(ge=1, le=10_000)
    weights: Weights = Weights()
    eligibility: Condition | None = None
    owner_reward: Reward | None = None
    member_reward: Reward | None = None

    def scopes(self) -> tuple[str, ...]:
        return ("group.year",) if self.period == "year" else ("group.month",)

    @model_validator(mode="after")
    def _check(self) -> RankRule:
        if self.days_of_week is not None:
            raise ValueError("days_of_week: a ranking reads whole months")
        if self.owner_reward is None and self.member_reward is None:
            raise ValueError("a rank rule needs owner_reward, member_reward or both")
        self._check_conditions(eligibility=self.eligibility)
        return self


def reads(rule: RankRule) -> frozenset[str]:
    scope = rule.scopes()[0]
    return frozenset(
        {f"{scope}.vitality", f"{scope}.active_members"} | conditions.metrics_of(rule.eligibility)
    )


SUMMED_OVER_YEAR = ("activity_points", "points_growth", "bonus_points", "group_messages")


def year_groups(months: Sequence[Sequence[GroupMonth]]) -> list[GroupMonth]:
    """A year's groups: each group's latest month (attributes, members, member counts) with
    the vitality components summed over the year's months — a year's vitality is the sum of
    its months' (SPEC §10), under any weights, since vitality is linear in them."""
    latest: dict[str, GroupMonth] = {}
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for month in months:
        for g in month:
            latest[g.group_id] = g
            for k in SUMMED_OVER_YEAR:
                sums[g.group_id][k] += float(g.counters.get(k, 0))
    return [replace(g, counters={**g.counters, **sums[gid]}) for gid, g in sorted(latest.items())]


def _scoped(values: Mapping[str, float], scope: str) -> dict[str, float]:
    if scope == "group.month":
        return dict(values)
    return {f"{scope}.{k.removeprefix('group.month.')}": v for k, v in values.items()}


@dataclass(frozen=True, slots=True)
class RankedGroup:
    rank: int
    partition: str
    group: GroupMonth
    vitality: float
    passed_over: tuple[str, ...] = ()  # excluded groups that ranked above it


def winners(
    rule: RankRule,
    period: Period,
    groups: Iterable[GroupMonth],
    enrolled: set[str] | None,
    excluded: Exclusions = NONE,
) -> list[RankedGroup]:
    """Top `rule.top` eligible groups per partition (SPEC §4 order), best ranks first; an
    excluded group is passed over and the next one takes its place."""
    by_partition: dict[str, list[tuple[float, float, str, GroupMonth]]] = defaultdict(list)
    scope = rule.scopes()[0]
    for g in considered(groups, period, enrolled):
        values = _scoped(g.values(rule.weights), scope)
        if rule.eligibility is not None and not conditions.evaluate(rule.eligibility, values):
            continue
        part = (g.province or "") if rule.partition == "province" else "all"
        vit = values[f"{scope}.vitality"]
        by_partition[part].append((-vit, -values.get(f"{scope}.active_members", 0), g.group_id, g))
    ranked: list[RankedGroup] = []
    for part, rows in by_partition.items():
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        passed: list[str] = []
        rank = 0
        for row in rows:
            if rank == rule.top:
                break
            if excluded.group(row[2]):
                passed.append(row[2])
                continue
            rank += 1
            ranked.append(RankedGroup(rank, part, row[3], -row[0], tuple(passed)))
    ranked.sort(key=lambda r: (r.rank, r.partition))
    return ranked


def grants(
    rule: RankRule,
    period: Period,
    ranked: Sequence[RankedGroup],
    members: Mapping[str, Sequence[str]],
    excluded: Exclusions = NONE,
) -> list[GrantDecision]:
    """Prizes to the winners' owners and rewards to their members, best ranks first (a member
    of two winning groups is decided twice; the ledger grants the first, domain/decisions.py);
    excluded users get nothing."""
    out: list[GrantDecision] = []
    for w in ranked:
        g = w.group
        why: dict[str, object] = {
            "group_id": g.group_id,
            "partition": w.partition,
            "rank": w.rank,
            "vitality": w.vitality,
            "weights": rule.weights.model_dump(),
            "active_members": g.counters.get("active_members", 0),
        }
        if w.passed_over:
            why["passed_over_excluded"] = list(w.passed_over)
        left_out = sorted(
            u for u in {g.owner_id, *members.get(g.group_id, ())} if u and excluded.user(u)
        )
        if left_out:
            why["excluded_users"] = left_out
        if rule.owner_reward is not None and g.owner_id and not excluded.user(g.owner_id):
            rewards = [rule.owner_reward]
            out.append(
                GrantDecision(
                    rule.id,
                    "owner",
                    g.owner_id,
                    period.label,
                    reward_items(rewards),
                    fulfilment(rewards, period.last_day),
                    g.group_id,
                    why,
                )
            )
        if rule.member_reward is not None:
            rewards = [rule.member_reward]
            for member in sorted(set(members.get(g.group_id, ())) - excluded.users):
                out.append(
                    GrantDecision(
                        rule.id,
                        "member",
                        member,
                        period.label,
                        reward_items(rewards),
                        fulfilment(rewards, period.last_day),
                        g.group_id,
                        why,
                    )
                )
    return out


async def settle(rule: RankRule, period: Period, inputs: RuleInputs) -> list[GrantDecision]:
    """Rank the month's groups; fetch member lists only of the winners (a month has 100k
    groups, its winners a few hundred)."""
    enrolled, excluded = await inputs.enrolled(), await inputs.exclusions()
    if rule.period == "year":
        months = [await inputs.groups(p, members=False) for p in _months_of(period, inputs.tz)]
        groups = year_groups(months)
    else:
        groups = await inputs.groups(period, members=False)
    ranked = winners(rule, period, groups, enrolled, excluded)
    members: dict[str, tuple[str, ...]] = {}
    if rule.member_reward is not None and ranked:
        last = _months_of(period, inputs.tz)[-1]
        with_members = await inputs.groups(last, only=[w.group.group_id for w in ranked])
        members = {g.group_id: g.member_ids for g in with_members}
    return grants(rule, period, ranked, members, excluded)


def _months_of(period: Period, tz: ZoneInfo) -> list[Period]:
    return [month_period(m, tz) for m in months_between(period.first_day, period.last_day)]


KIND = PeriodEndKind(name="rank", model=RankRule, reads=reads, settle=settle)
