"""Lottery (SPEC §5, verifiable draws): at each period's end, K winners among the eligible
users' tickets, by smallest HMAC of the seed committed before the period.

Reads what its eligibility names and its tickets metric (one ticket each without one); settles
at period end, with a draw whose seed is committed at activation. An excluded user's tickets
are not entered (the frozen entries stay what was drawn from); the winners' explanation names
the eligible users left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field, model_validator

from services.rewards.domain import conditions, draws
from services.rewards.domain.conditions import ConditionError
from services.rewards.domain.decisions import GrantDecision
from services.rewards.domain.exclusions import NONE, Exclusions
from services.rewards.domain.periods import Period
from services.rewards.domain.rules.base import (
    Condition,
    MetricName,
    Model,
    PeriodEndKind,
    Reward,
    RuleBase,
    RuleInputs,
    check_days_of_week,
    fulfilment,
    period_context,
    period_users,
    reward_items,
    user_scopes,
)


class TicketsFrom(Model):
    """Grants of kind `ticket` of a named campaign (its id or its name) and rule, whose period
    lies within the draw's period: one entry per ticket (SPEC §10 Tickets from the ledger)."""

    campaign: str = Field(min_length=1, max_length=120, examples=["My Fetion, my group"])
    rule_id: str = Field(min_length=1, max_length=40, examples=["top20-province"])


class LotteryRule(RuleBase):
    """At each period's end, K winners among eligible users by smallest HMAC (verifiable)."""

    kind: Literal["lottery"]
    period: Literal["day", "week", "month", "year", "campaign"] = "day"
    eligibility: Condition | None = None
    tickets: MetricName | None = Field(
        default=None, description="Tickets per entrant from this metric; absent = 1 ticket."
    )
    tickets_from: TicketsFrom | None = Field(
        default=None,
        description="More tickets: granted `ticket` rewards of another campaign's rule in the "
        "period (added to the metric's).",
    )
    winners: int = Field(ge=1, le=1_000_000)
    repeat_winners: bool = Field(default=False, description="May one user win several tickets?")
    rewards: list[Reward] = Field(min_length=1, max_length=8)

    def scopes(self) -> tuple[str, ...]:
        return user_scopes(self.period)

    @model_validator(mode="after")
    def _check(self) -> LotteryRule:
        check_days_of_week(self.days_of_week)
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


def eligible(rule: LotteryRule, users: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The users whose values meet the eligibility, in the order given."""
    return [
        u
        for u, values in users.items()
        if rule.eligibility is None or conditions.evaluate(rule.eligibility, values)
    ]


def entries(
    rule: LotteryRule,
    users: Mapping[str, Mapping[str, float]],
    excluded: Exclusions = NONE,
    ledger_tickets: Mapping[str, int] | None = None,
) -> list[str]:
    """The frozen entries: a ticket per eligible user, or as many as the tickets metric says
    plus the user's tickets from the ledger (`tickets_from`); none for an excluded user."""
    out: list[str] = []
    extra = ledger_tickets or {}
    for user_id in eligible(rule, users):
        values = users[user_id]
        if excluded.user(user_id):
            continue
        if rule.tickets is None and rule.tickets_from is None:
            out.append(user_id)
            continue
        n = int(values.get(rule.tickets, 0)) if rule.tickets else 0
        n += extra.get(user_id, 0)
        out.extend(draws.ticket_entries(user_id, n))
    return draws.frozen(out)


def grants(
    rule: LotteryRule, period: Period, winners: Sequence[str], left_out: Sequence[str] = ()
) -> list[GrantDecision]:
    """One grant per winning user; with repeat winners its amount counts every winning ticket.
    `left_out`: eligible users not entered because they are excluded."""
    tickets: dict[str, list[str]] = defaultdict(list)
    for entry in winners:
        tickets[draws.entrant(entry)].append(entry)
    why: dict[str, object] = {"excluded_entrants": sorted(left_out)} if left_out else {}
    return [
        GrantDecision(
            rule.id,
            "user",
            user_id,
            period.label,
            reward_items(rule.rewards, len(won)),
            fulfilment(rule.rewards, period.last_day),
            None,
            {"winning_entries": won, **why},
        )
        for user_id, won in tickets.items()
    ]


async def settle(rule: LotteryRule, period: Period, inputs: RuleInputs) -> list[GrantDecision]:
    users = await period_users(inputs, period, reads(rule), rule.days_of_week)
    excluded = await inputs.exclusions()
    ledger: dict[str, int] = {}
    if rule.tickets_from is not None:
        ledger = await inputs.ledger_tickets(
            rule.tickets_from.campaign, rule.tickets_from.rule_id, period
        )
        for u in ledger.keys() - users.keys():  # a ticket holder with no stored day enters
            users[u] = (await period_context(inputs, period, reads(rule), [u])).get(u, {})
        users = dict(sorted(users.items()))
    won = await inputs.draw(
        rule.id, period, entries(rule, users, excluded, ledger), rule.winners, rule.repeat_winners
    )
    left_out = [u for u in eligible(rule, users) if excluded.user(u)]
    return grants(rule, period, won, left_out)


def reads_grants_of(rule: LotteryRule) -> tuple[str, str] | None:
    source = rule.tickets_from
    return None if source is None else (source.campaign, source.rule_id)


KIND = PeriodEndKind(
    name="lottery",
    model=LotteryRule,
    reads=reads,
    settle=settle,
    draws=True,
    reads_grants_of=reads_grants_of,
)
