"""Lottery (SPEC §5, verifiable draws): at each period's end, K winners among the eligible
users' tickets, by smallest HMAC of the seed committed before the period.

Reads what its eligibility names and its tickets metric (one ticket each without one); settles
at period end, with a draw whose seed is committed at activation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field, model_validator

from services.rewards.domain import conditions, draws
from services.rewards.domain.conditions import ConditionError
from services.rewards.domain.decisions import GrantDecision
from services.rewards.domain.periods import Period
from services.rewards.domain.rules.base import (
    Condition,
    MetricName,
    PeriodEndKind,
    Reward,
    RuleBase,
    RuleInputs,
    fulfilment,
    period_users,
    reward_items,
    user_scopes,
)


class LotteryRule(RuleBase):
    """At each period's end, K winners among eligible users by smallest HMAC (verifiable)."""

    kind: Literal["lottery"]
    period: Literal["day", "month"] = "day"
    eligibility: Condition | None = None
    tickets: MetricName | None = Field(
        default=None, description="Tickets per entrant from this metric; absent = 1 ticket."
    )
    winners: int = Field(ge=1, le=1_000_000)
    repeat_winners: bool = Field(default=False, description="May one user win several tickets?")
    rewards: list[Reward] = Field(min_length=1, max_length=8)

    def scopes(self) -> tuple[str, ...]:
        return user_scopes(self.period)

    @model_validator(mode="after")
    def _check(self) -> LotteryRule:
        self._check_conditions(eligibility=self.eligibility)
        if self.tickets is not None:
            try:
                conditions.parse_metric(self.tickets, self.scopes())
            except ConditionError as exc:
                raise ValueError(f"tickets: {exc}") from None
        return self


def reads(rule: LotteryRule) -> frozenset[str]:
    tickets = {rule.tickets} if rule.tickets else set()
    return frozenset(conditions.metrics_of(rule.eligibility) | tickets)


def entries(rule: LotteryRule, users: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The frozen entries: a ticket per eligible user, or as many as the tickets metric says."""
    out: list[str] = []
    for user_id, values in users.items():
        if rule.eligibility is not None and not conditions.evaluate(rule.eligibility, values):
            continue
        if rule.tickets is None:
            out.append(user_id)
        else:
            out.extend(draws.ticket_entries(user_id, int(values.get(rule.tickets, 0))))
    return draws.frozen(out)


def grants(rule: LotteryRule, period: Period, winners: Sequence[str]) -> list[GrantDecision]:
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
            reward_items(rule.rewards, len(won)),
            fulfilment(rule.rewards, period.first_day),
            None,
            {"winning_entries": won},
        )
        for user_id, won in tickets.items()
    ]


async def settle(rule: LotteryRule, period: Period, inputs: RuleInputs) -> list[GrantDecision]:
    users = await period_users(inputs, period, reads(rule))
    won = await inputs.draw(
        rule.id, period, entries(rule, users), rule.winners, rule.repeat_winners
    )
    return grants(rule, period, won)


KIND = PeriodEndKind(name="lottery", model=LotteryRule, reads=reads, settle=settle, draws=True)
