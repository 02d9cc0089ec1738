"""Period-end settlement and real-time thresholds as pure decisions (SPEC §1, §5).

Inputs are the metric values rewards stored from `engage.metrics.v1`; outputs are grant
decisions in priority order (the order a tight budget is spent in). The store layer loads the
inputs and records the decisions; simulation calls the same functions without recording.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from services.rewards.domain import conditions, draws
from services.rewards.domain.periods import Period, fulfil_by
from services.rewards.domain.rules import (
    LotteryRule,
    RankRule,
    Reward,
    ScaledRule,
    ThresholdRule,
    Weights,
)


@dataclass(frozen=True, slots=True)
class GroupMonth:
    """A group's month as scoring published it: counters, attributes, members at month end."""

    group_id: str
    owner_id: str | None
    province: str | None
    created_at: datetime | None
    dissolved_at: datetime | None
    member_ids: tuple[str, ...]
    counters: Mapping[str, float]  # members, active_members, activity_points, ...
    month: date | None = None  # first day of the month these values are for

    def standing_at(self, end: datetime) -> bool:
        """Created before `end` and not dissolved by then (the leaderboard's groups, SPEC §4)."""
        return (
            self.created_at is not None
            and self.created_at < end
            and (self.dissolved_at is None or self.dissolved_at >= end)
        )

    def values(
        self, weights: Weights | None = None, effective: int | None = None
    ) -> dict[str, float]:
        """`group.month.*` values; vitality under `weights` when given."""
        c = self.counters
        out = {f"group.month.{k}": float(v) for k, v in c.items()}
        if weights is not None:
            out["group.month.vitality"] = (
                weights.growth * c.get("points_growth", 0)
                + weights.activity * c.get("activity_points", 0)
                + weights.bonus * c.get("bonus_points", 0)
            )
        members = c.get("members", 0)
        out["group.month.active_ratio"] = c.get("active_members", 0) / members if members else 0.0
        if effective is not None:
            out["group.month.effective_active_members"] = float(effective)
        return out


@dataclass(frozen=True, slots=True)
class GrantDecision:
    rule_id: str
    role: str  # "owner", "member" or "user"
    user_id: str
    period: str
    items: tuple[tuple[str, int], ...]  # (reward kind, amount)
    fulfil_by: date
    group_id: str | None = None
    explanation: Mapping[str, Any] = field(default_factory=dict)
    revocable: bool = False  # revoked if its group is dissolved before fulfil_by

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.rule_id, self.role, self.user_id, self.period)

    def demand(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for kind, amount in self.items:
            out[kind] += amount
        return dict(out)


def _items(rewards: Iterable[Reward], times: int = 1) -> tuple[tuple[str, int], ...]:
    return tuple((r.kind, r.amount * times) for r in rewards)


def _fulfil(rewards: Sequence[Reward], first_day: date) -> date:
    return max(fulfil_by(first_day, r.fulfil_next_month_day) for r in rewards)


def effective_active_members(
    groups: Iterable[GroupMonth], active_users: set[str]
) -> dict[str, int]:
    """Per group, its active members who belong to no other of these groups (SPEC §1)."""
    groups = list(groups)
    memberships = Counter(u for g in groups for u in set(g.member_ids))
    return {
        g.group_id: sum(1 for u in set(g.member_ids) if u in active_users and memberships[u] == 1)
        for g in groups
    }


def _eligible(
    groups: Iterable[GroupMonth], period: Period, enrolled: set[str] | None
) -> list[GroupMonth]:
    return [
        g
        for g in groups
        if g.standing_at(period.end) and (enrolled is None or g.group_id in enrolled)
    ]


@dataclass(frozen=True, slots=True)
class RankedGroup:
    rank: int
    partition: str
    group: GroupMonth
    vitality: float


def rank_winners(
    rule: RankRule, period: Period, groups: Iterable[GroupMonth], enrolled: set[str] | None
) -> list[RankedGroup]:
    """Top `rule.top` eligible groups per partition (SPEC §4 order), best ranks first."""
    by_partition: dict[str, list[tuple[float, float, str, GroupMonth]]] = defaultdict(list)
    for g in _eligible(groups, period, enrolled):
        values = g.values(rule.weights)
        if rule.eligibility is not None and not conditions.evaluate(rule.eligibility, values):
            continue
        part = (g.province or "") if rule.partition == "province" else "all"
        vit = values["group.month.vitality"]
        by_partition[part].append(
            (-vit, -values.get("group.month.active_members", 0), g.group_id, g)
        )
    ranked: list[RankedGroup] = []
    for part, rows in by_partition.items():
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        ranked.extend(
            RankedGroup(i + 1, part, row[3], -row[0]) for i, row in enumerate(rows[: rule.top])
        )
    ranked.sort(key=lambda r: (r.rank, r.partition))
    return ranked


def rank_grants(
    rule: RankRule,
    period: Period,
    winners: Sequence[RankedGroup],
    members: Mapping[str, Sequence[str]],
) -> list[GrantDecision]:
    """Prizes to the winners' owners and rewards to their members (at the month's end)."""
    out: list[GrantDecision] = []
    for w in winners:
        g = w.group
        why = {
            "group_id": g.group_id,
            "partition": w.partition,
            "rank": w.rank,
            "vitality": w.vitality,
            "weights": rule.weights.model_dump(),
            "active_members": g.counters.get("active_members", 0),
        }
        if rule.owner_reward is not None and g.owner_id:
            out.append(
                GrantDecision(
                    rule.id,
                    "owner",
                    g.owner_id,
                    period.label,
                    _items([rule.owner_reward]),
                    _fulfil([rule.owner_reward], period.first_day),
                    g.group_id,
                    why,
                )
            )
        if rule.member_reward is not None:
            for member in sorted(set(members.get(g.group_id, ()))):
                out.append(
                    GrantDecision(
                        rule.id,
                        "member",
                        member,
                        period.label,
                        _items([rule.member_reward]),
                        _fulfil([rule.member_reward], period.first_day),
                        g.group_id,
                        why,
                    )
                )
    # A member of two winning groups is rewarded once (one grant per rule, subject, period).
    unique: dict[tuple[str, str, str, str], GrantDecision] = {}
    for d in out:
        unique.setdefault(d.key, d)
    return list(unique.values())


def settle_rank(
    rule: RankRule, period: Period, groups: Iterable[GroupMonth], enrolled: set[str] | None
) -> list[GrantDecision]:
    """Top `rule.top` eligible groups per partition; prizes to owners, rewards to members."""
    winners = rank_winners(rule, period, groups, enrolled)
    return rank_grants(
        rule, period, winners, {w.group.group_id: w.group.member_ids for w in winners}
    )


def scaled_amount(rule: ScaledRule, units: float) -> int:
    amount = int(units) * rule.amount_per_unit
    if rule.cap is not None:
        amount = min(amount, rule.cap)
    return amount if amount >= rule.min_amount else 0


def settle_scaled_groups(
    rule: ScaledRule,
    period: Period,
    groups: Iterable[GroupMonth],
    enrolled: set[str] | None,
    active_users: set[str],
) -> list[GrantDecision]:
    """Group-scaled credit to owners; `effective_active_members` counts among considered groups."""
    considered = _eligible(groups, period, enrolled)
    effective = effective_active_members(considered, active_users)
    out: list[GrantDecision] = []
    for g in sorted(considered, key=lambda x: x.group_id):
        values = g.values(Weights(), effective[g.group_id])
        if rule.eligibility is not None and not conditions.evaluate(rule.eligibility, values):
            continue
        units = values.get(rule.metric, 0.0)
        amount = scaled_amount(rule, units)
        if amount == 0 or not g.owner_id:
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
                ((rule.reward_kind, amount),),
                fulfil_by(period.first_day, rule.fulfil_next_month_day),
                g.group_id,
                why,
                rule.revoke_if_group_dissolved,
            )
        )
    return out


def settle_scaled_users(
    rule: ScaledRule, period: Period, users: Mapping[str, Mapping[str, float]]
) -> list[GrantDecision]:
    out: list[GrantDecision] = []
    for user_id in sorted(users):
        values = users[user_id]
        if rule.eligibility is not None and not conditions.evaluate(rule.eligibility, values):
            continue
        amount = scaled_amount(rule, values.get(rule.metric, 0.0))
        if amount:
            why = {"metric": rule.metric, "units": values.get(rule.metric, 0.0)}
            out.append(
                GrantDecision(
                    rule.id,
                    "user",
                    user_id,
                    period.label,
                    ((rule.reward_kind, amount),),
                    fulfil_by(period.first_day, rule.fulfil_next_month_day),
                    None,
                    why,
                )
            )
    return out


def lottery_entries(rule: LotteryRule, users: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The frozen entries: a ticket per eligible user, or as many as the tickets metric says."""
    entries: list[str] = []
    for user_id, values in users.items():
        if rule.eligibility is not None and not conditions.evaluate(rule.eligibility, values):
            continue
        if rule.tickets is None:
            entries.append(user_id)
        else:
            entries.extend(draws.ticket_entries(user_id, int(values.get(rule.tickets, 0))))
    return draws.frozen(entries)


def lottery_grants(
    rule: LotteryRule, period: Period, winners: Sequence[str]
) -> list[GrantDecision]:
    """One grant per winning user; with repeat winners its amount counts every winning ticket."""
    tickets: dict[str, list[str]] = defaultdict(list)
    for entry in winners:
        tickets[draws.entrant(entry)].append(entry)
    return [
        GrantDecision(
            rule.id,
            "user",
            user_id,
            period.label,
            _items(rule.rewards, len(won)),
            _fulfil(rule.rewards, period.first_day),
            None,
            {"winning_entries": won},
        )
        for user_id, won in tickets.items()
    ]


def threshold_decision(
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
        _items(rule.rewards),
        _fulfil(rule.rewards, fired_in.first_day),
        group_id,
        why,
    )
