"""Rule kinds behind one registry (SPEC §5, §10): what each kind reads, whether it settles at
period end, how it decides through the inputs the store answers — and the one de-duplication
every flow shares. Pure: no database, no broker."""

from __future__ import annotations

import typing
from datetime import date, datetime
from typing import Any, TypeVar

import pytest
from pydantic import TypeAdapter

from services.rewards.domain.campaign import CampaignDefinition, Rule
from services.rewards.domain.decisions import GrantDecision, distinct
from services.rewards.domain.groups import Weights, vitality
from services.rewards.domain.periods import day_period, month_period
from services.rewards.domain.rules import lottery, rank, threshold
from services.rewards.domain.rules.base import NewValues, PeriodEndKind, RealTimeKind
from services.rewards.domain.rules.lottery import LotteryRule
from services.rewards.domain.rules.rank import RankRule
from services.rewards.domain.rules.registry import (
    KINDS,
    AnyRule,
    kind_of,
    period_end,
    real_time,
)
from services.rewards.domain.rules.scaled import ScaledRule
from services.rewards.domain.rules.threshold import ThresholdRule
from services.rewards.domain.settlement import periods_past_grace
from services.rewards.domain.simulation import outcome
from tests.unit.rewards_inputs import OCT_NOV, TZ, InMemoryInputs, group

OCT = month_period(date(2026, 10, 1), TZ)
REWARD = {"kind": "points", "amount": 10}


def leaf(metric: str, op: str, value: float) -> dict[str, Any]:
    return {"metric": metric, "op": op, "value": value}


DEFAULTS: dict[str, dict[str, Any]] = {
    "rank": {"top": 1, "owner_reward": REWARD},
    "threshold": {"condition": leaf("user.day.checkins", ">=", 1), "rewards": [REWARD]},
    "lottery": {"winners": 1, "rewards": [REWARD]},
    "scaled": {
        "metric": "group.month.active_members",
        "reward_kind": "credit_fen",
        "amount_per_unit": 100,
    },
}
M = TypeVar("M", RankRule, ThresholdRule, LotteryRule, ScaledRule)


def rule(kind: str, **fields: Any) -> AnyRule:
    """A valid rule of `kind` as a campaign would parse it, `fields` replacing its defaults."""
    doc = {"id": f"{kind}-rule", "kind": kind, **DEFAULTS[kind], **fields}
    parsed: AnyRule = TypeAdapter(Rule).validate_python(doc)
    return parsed


def a(model: type[M], **fields: Any) -> M:
    """A valid rule of this model, `fields` replacing its defaults."""
    (kind,) = typing.get_args(model.model_fields["kind"].annotation)
    return model.model_validate({"id": f"{kind}-rule", "kind": kind, **DEFAULTS[kind], **fields})


def decision(user: str, rule_id: str = "r", period: str = "2026-10", **kw: Any) -> GrantDecision:
    return GrantDecision(rule_id, "user", user, period, (("points", 10),), date(2026, 11, 10), **kw)


# --- the registry --------------------------------------------------------------------------


def test_every_kind_is_registered_under_the_name_its_rules_carry() -> None:
    assert set(KINDS) == {"rank", "threshold", "lottery", "scaled"}
    for name, kind in KINDS.items():
        assert kind.name == name
        assert typing.get_args(kind.model.model_fields["kind"].annotation) == (name,)
        assert kind_of(rule(name)) is kind


def test_a_campaign_accepts_exactly_the_registered_kinds() -> None:
    assert set(typing.get_args(AnyRule)) == {k.model for k in KINDS.values()}


@pytest.mark.parametrize(
    ("name", "settles_at_period_end", "draws"),
    [
        ("rank", True, False),
        ("scaled", True, False),
        ("lottery", True, True),
        ("threshold", False, False),
    ],
)
def test_period_end_kinds_settle_once_per_period_and_thresholds_fire_as_values_arrive(
    name: str, settles_at_period_end: bool, draws: bool
) -> None:
    kind = KINDS[name]
    assert kind.settles_at_period_end is settles_at_period_end
    assert isinstance(kind, PeriodEndKind if settles_at_period_end else RealTimeKind)
    assert kind.draws is draws


@pytest.mark.parametrize(
    ("example", "metrics"),
    [
        (
            rule("rank", eligibility=leaf("group.month.members", ">=", 3)),
            {"group.month.vitality", "group.month.active_members", "group.month.members"},
        ),
        (
            rule("threshold", condition=leaf("user.campaign.friends_added", ">=", 2)),
            {"user.campaign.friends_added"},
        ),
        (
            rule(
                "lottery",
                period="month",
                eligibility=leaf("user.month.checkins", ">=", 1),
                tickets="user.month.friends_added",
            ),
            {"user.month.checkins", "user.month.friends_added"},
        ),
        (rule("lottery"), set()),
        (
            rule("scaled", eligibility=leaf("group.month.members", ">=", 3)),
            {"group.month.active_members", "group.month.members"},
        ),
    ],
    ids=["rank", "threshold", "lottery", "lottery-one-ticket", "scaled"],
)
def test_each_kind_says_which_metrics_it_reads(example: AnyRule, metrics: set[str]) -> None:
    assert kind_of(example).reads(example) == metrics


def test_period_end_and_real_time_rules_keep_the_campaigns_order() -> None:
    rules = [rule("lottery", id="l1"), rule("threshold", id="t1"), rule("rank", id="r1")]
    assert [(r.id, k.name) for r, k in period_end(rules)] == [("l1", "lottery"), ("r1", "rank")]
    assert [(r.id, k.name) for r, k in real_time(rules)] == [("t1", "threshold")]


# --- the one de-duplication ----------------------------------------------------------------


def test_the_first_decision_of_a_key_is_the_grant_and_order_is_kept() -> None:
    first = decision("u1", explanation={"fired_in": "2026-10-03"})
    later = decision("u1", explanation={"fired_in": "2026-10-05"})
    assert distinct([decision("u2"), first, decision("u3"), later]) == [
        decision("u2"),
        first,
        decision("u3"),
    ]


def test_decisions_of_other_rules_roles_or_periods_are_other_grants() -> None:
    base = decision("u1")
    others = [
        decision("u1", rule_id="other"),
        decision("u1", period="2026-11"),
        GrantDecision("r", "owner", "u1", "2026-10", (("points", 10),), date(2026, 11, 10)),
    ]
    assert distinct([base, *others, base]) == [base, *others]


def test_a_simulation_grants_each_key_once_and_spends_the_budget_in_order() -> None:
    sim = outcome([decision("u1"), decision("u1"), decision("u2"), decision("u3")], {"points": 20})
    assert [(d.user_id, s) for d, s in zip(sim.decisions, sim.statuses, strict=True)] == [
        ("u1", "granted"),
        ("u2", "granted"),
        ("u3", "budget_exhausted"),
    ]
    assert sim.budget_use == {"points": {"units": 20, "budget": 20}}


# --- when periods settle -------------------------------------------------------------------


def test_only_period_end_rules_settle_and_only_after_the_grace() -> None:
    rules = [rule("lottery", id="daily"), rule("threshold"), rule("rank", id="monthly")]
    now = datetime(2026, 10, 3, 1, 59, tzinfo=TZ)  # Oct 2 settles at 02:00 on Oct 3
    due = periods_past_grace(rules, OCT_NOV, None, now, TZ)
    assert [(r.id, p.label) for r, _, p in due] == [("daily", "2026-10-01")]
    later = periods_past_grace(rules, OCT_NOV, None, datetime(2026, 11, 3, tzinfo=TZ), TZ)
    assert ("monthly", "2026-10") in [(r.id, p.label) for r, _, p in later]


def test_a_campaign_ended_early_never_settles_the_periods_after() -> None:
    ended_at = datetime(2026, 10, 2, 12, tzinfo=TZ)
    now = datetime(2026, 12, 10, tzinfo=TZ)
    due = periods_past_grace([rule("lottery")], OCT_NOV, ended_at, now, TZ)
    assert [p.label for _, _, p in due] == ["2026-10-01", "2026-10-02"]


# --- how kinds decide, through the inputs the store answers --------------------------------


def test_vitality_weighs_growth_activity_and_bonus() -> None:
    counters = {"points_growth": 10.0, "activity_points": 5.0, "bonus_points": 1.0}
    assert vitality(counters, Weights()) == 16.0
    assert vitality(counters, Weights(growth=0, activity=2, bonus=10)) == 20.0


async def test_rank_reads_member_lists_only_of_the_winners() -> None:
    r = a(RankRule, member_reward={"kind": "ticket", "amount": 1})
    groups = [
        group("a", members=("u1", "u2"), activity_points=10),
        group("b", members=("u3",), activity_points=5),
    ]
    inputs = InMemoryInputs(group_months=groups)
    decided = await rank.settle(r, OCT, inputs)
    assert inputs.asked_members_of == [["a"]]
    assert [(d.role, d.user_id) for d in decided] == [
        ("owner", "owner-a"),
        ("member", "u1"),
        ("member", "u2"),
    ]


async def test_a_member_of_two_winning_groups_is_granted_once() -> None:
    r = a(RankRule, top=1, partition="province", member_reward={"kind": "ticket", "amount": 1})
    groups = [group("a", "BJ", ("u1", "u2")), group("b", "SH", ("u2", "u3"))]
    decided = await rank.settle(r, OCT, InMemoryInputs(group_months=groups))
    assert [d.user_id for d in decided if d.role == "member"] == ["u1", "u2", "u2", "u3"]
    assert [d.user_id for d in distinct(decided) if d.role == "member"] == ["u1", "u2", "u3"]


async def test_a_lottery_draws_among_the_periods_eligible_users() -> None:
    r = a(LotteryRule, winners=5, eligibility=leaf("user.day.checkins", ">=", 1))
    day = day_period(date(2026, 10, 3), TZ)
    inputs = InMemoryInputs(
        user_days={
            ("in", day.first_day): {"checkins": 1},
            ("idle", day.first_day): {"checkins": 0},
            ("other-day", date(2026, 10, 4)): {"checkins": 1},
        }
    )
    decided = await lottery.settle(r, day, inputs)
    assert inputs.drawn == [("lottery-rule", "2026-10-03", ["in"])]
    assert [(d.user_id, d.period) for d in decided] == [("in", "2026-10-03")]


async def test_a_once_per_campaign_threshold_fires_on_the_first_day_its_sum_holds() -> None:
    r = a(ThresholdRule, once="campaign", condition=leaf("user.campaign.friends_added", ">=", 2))
    days = {("u", date(2026, 10, d)): {"friends_added": 1.0} for d in (3, 4, 5)}
    inputs = InMemoryInputs(user_days=days)
    decided = await threshold.evaluate(r, NewValues(user_days=days), inputs)
    # The campaign's sum stops at the evaluated day (SPEC §9): 1 on the 3rd, 2 on the 4th.
    (grant,) = decided
    assert (grant.period, grant.explanation["fired_on"]) == ("campaign", "2026-10-04")


async def test_a_threshold_ignores_values_outside_the_campaign_window() -> None:
    r = a(ThresholdRule)
    days = {
        ("u", date(2026, 9, 30)): {"checkins": 1.0},
        ("u", date(2026, 10, 1)): {"checkins": 1.0},
    }
    inputs = InMemoryInputs(user_days=days)
    decided = await threshold.evaluate(r, NewValues(user_days=days), inputs)
    assert [d.period for d in decided] == ["2026-10-01"]


async def test_a_group_threshold_fires_only_for_enrolled_standing_groups() -> None:
    r = a(
        ThresholdRule,
        entity="group",
        period="month",
        condition=leaf("group.month.members", ">=", 2),
    )
    october = date(2026, 10, 1)
    groups = [
        group("in", members=("a", "b"), month=october),
        group("not-enrolled", members=("c", "d"), month=october),
        group("small", members=("e",), month=october),
    ]
    inputs = InMemoryInputs(enrolled_groups={"in", "small"})
    decided = await threshold.evaluate(r, NewValues(groups=groups), inputs)
    assert [(d.role, d.user_id, d.group_id) for d in decided] == [("owner", "owner-in", "in")]


async def test_replaying_a_period_end_rule_settles_the_ended_periods_of_the_range() -> None:
    r = rule("lottery")
    inputs = InMemoryInputs(
        user_days={("u", date(2026, 10, d)): {"checkins": 1.0} for d in range(1, 8)}
    )
    now = datetime(2026, 10, 6, 12, tzinfo=TZ)  # Oct 6 has not ended
    decided = await kind_of(r).replay(r, date(2026, 10, 3), date(2026, 10, 9), now, inputs)
    assert [d.period for d in decided] == ["2026-10-03", "2026-10-04", "2026-10-05"]


async def test_replaying_a_threshold_evaluates_every_stored_day_of_the_range() -> None:
    r = rule("threshold")
    inputs = InMemoryInputs(
        user_days={("u", date(2026, 10, d)): {"checkins": 1.0} for d in range(1, 8)}
    )
    now = datetime(2026, 10, 20, tzinfo=TZ)
    decided = await kind_of(r).replay(r, date(2026, 10, 3), date(2026, 10, 4), now, inputs)
    assert [d.period for d in decided] == ["2026-10-03", "2026-10-04"]


def test_a_definitions_window_is_its_campaigns() -> None:
    d = CampaignDefinition.model_validate(
        {
            "name": "t",
            "starts_at": OCT_NOV.starts_at.isoformat(),
            "ends_at": OCT_NOV.ends_at.isoformat(),
            "rules": [{"id": "l", "kind": "lottery", "winners": 1, "rewards": [REWARD]}],
        }
    )
    assert d.window == OCT_NOV
    assert d.window.overlaps(day_period(date(2026, 11, 30), TZ))
    assert not d.window.overlaps(day_period(date(2026, 12, 1), TZ))
