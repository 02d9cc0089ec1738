"""Rewards domain (SPEC §5): the condition language, the four rule kinds, budgets, draws,
periods and the lifecycle — pure, no I/O."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.rewards.domain import conditions, draws, lifecycle
from services.rewards.domain.budget import BUDGET_EXHAUSTED, GRANTED, allocate
from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.groups import GroupMonth, effective_active_members
from services.rewards.domain.periods import (
    day_period,
    fulfil_by,
    month_period,
    periods_in_window,
)
from services.rewards.domain.rules import lottery, rank, scaled, threshold
from services.rewards.domain.rules.lottery import LotteryRule
from services.rewards.domain.rules.rank import RankRule
from services.rewards.domain.rules.scaled import ScaledRule
from services.rewards.domain.templates import TEMPLATES
from shared.errors import Conflict, Forbidden
from tests.unit.rewards_inputs import TZ, InMemoryInputs, group

OCT = month_period(date(2026, 10, 1), TZ)


def leaf(metric: str, op: str, value: float) -> dict[str, Any]:
    return {"metric": metric, "op": op, "value": value}


def definition(rule: dict[str, Any], **extra: Any) -> CampaignDefinition:
    return CampaignDefinition.model_validate(
        {
            "name": "t",
            "starts_at": "2026-10-01T00:00:00+08:00",
            "ends_at": "2026-12-01T00:00:00+08:00",
            "rules": [rule],
            **extra,
        }
    )


# --- the condition language ---------------------------------------------------------------


def test_condition_tree_evaluates_all_any_not() -> None:
    tree = conditions.parse(
        {
            "all": [
                leaf("user.day.checkins", ">=", 1),
                {
                    "any": [
                        leaf("user.day.online_points", ">=", 4),
                        leaf("user.prev_month.points_delta", ">", 50),
                    ]
                },
                {"not": leaf("user.day.messages_sms", ">", 100)},
            ]
        }
    )
    base = {"user.day.checkins": 1.0, "user.day.online_points": 4.0}
    assert conditions.evaluate(tree, base)
    assert not conditions.evaluate(tree, base | {"user.day.online_points": 3.0})
    assert conditions.evaluate(
        tree, base | {"user.day.online_points": 0.0, "user.prev_month.points_delta": 51.0}
    )
    assert not conditions.evaluate(tree, base | {"user.day.messages_sms": 101.0})


def test_missing_metric_reads_as_zero() -> None:
    assert conditions.evaluate(conditions.parse(leaf("user.day.messages", "==", 0)), {})


def test_condition_round_trips_through_its_json_form() -> None:
    tree = {
        "any": [
            leaf("group.month.members", ">=", 25),
            {"not": leaf("group.month.vitality", "<", 1.5)},
        ]
    }
    assert conditions.dump(conditions.parse(tree)) == tree


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"all": [leaf("user.day.checkins", "=>", 1)]}, "all[0].op: '=>' is not one of"),
        ({"any": []}, "any: must be a non-empty list"),
        (leaf("user.weekly.messages", ">=", 1), "metric: unknown metric scope 'user.weekly'"),
        (leaf("user.day.mesages", ">=", 1), "did you mean user.day.messages?"),
        (
            {"not": {"metric": "user.day.messages", "op": ">=", "value": "1"}},
            "not.value: must be a number",
        ),
        ({"metric": "user.day.messages", "op": ">="}, "missing ['value']"),
        ({"all": [leaf("user.day.messages", ">=", 1)], "x": 1}, "take no other keys"),
        ([1], "a condition must be an object"),
    ],
)
def test_bad_condition_is_rejected_with_its_path(tree: Any, message: str) -> None:
    with pytest.raises(conditions.ConditionError, match=None) as caught:
        conditions.parse(tree)
    assert message in str(caught.value)


def test_deep_or_huge_trees_are_refused() -> None:
    deep: dict[str, Any] = leaf("user.day.messages", ">=", 1)
    for _ in range(10):
        deep = {"not": deep}
    with pytest.raises(conditions.ConditionError, match="deeper"):
        conditions.parse(deep)
    with pytest.raises(conditions.ConditionError, match="leaves"):
        conditions.parse({"all": [leaf("user.day.messages", ">=", i) for i in range(65)]})


def test_rule_validation_error_names_the_rule_field() -> None:
    with pytest.raises(ValidationError) as caught:
        definition(
            {
                "id": "t",
                "kind": "threshold",
                "condition": {"all": [leaf("user.day.checkins", "~", 1)]},
                "rewards": [{"kind": "points", "amount": 1}],
            }
        )
    (error,) = caught.value.errors()
    assert error["loc"][:4] == ("rules", 0, "threshold", "condition")
    assert "all[0].op" in error["msg"]


def test_a_rank_rule_cannot_use_user_metrics() -> None:
    with pytest.raises(
        ValidationError, match=r"eligibility: metric 'user\.day\.messages' is not available"
    ):
        definition(
            {
                "id": "r",
                "kind": "rank",
                "top": 3,
                "eligibility": leaf("user.day.messages", ">=", 1),
                "owner_reward": {"kind": "prize", "amount": 1},
            }
        )


def test_monthly_lottery_cannot_read_day_metrics() -> None:
    with pytest.raises(ValidationError, match="not available"):
        definition(
            {
                "id": "l",
                "kind": "lottery",
                "period": "month",
                "winners": 1,
                "eligibility": leaf("user.day.checkins", ">=", 1),
                "rewards": [{"kind": "points", "amount": 1}],
            }
        )


def test_a_day_threshold_reads_the_month_to_date_and_a_lottery_not_the_day_of_a_week() -> None:
    # Sums up to the evaluated day (SPEC §9): a day threshold may read the month so far.
    definition(
        {
            "id": "t",
            "kind": "threshold",
            "condition": leaf("user.month.messages_mobile", ">=", 1),
            "rewards": [{"kind": "points", "amount": 1}],
        }
    )
    with pytest.raises(ValidationError, match="not available"):
        definition(
            {
                "id": "t",
                "kind": "lottery",
                "period": "week",
                "winners": 1,
                "eligibility": leaf("user.day.messages", ">=", 1),
                "rewards": [{"kind": "points", "amount": 1}],
            }
        )
    with pytest.raises(ValidationError, match="only at settlement"):
        definition(
            {
                "id": "t",
                "kind": "threshold",
                "entity": "group",
                "period": "month",
                "condition": leaf("group.month.effective_active_members", ">=", 1),
                "rewards": [{"kind": "points", "amount": 1}],
            }
        )


def test_campaign_window_and_rule_ids_are_checked() -> None:
    rule = {
        "id": "x",
        "kind": "lottery",
        "winners": 1,
        "rewards": [{"kind": "points", "amount": 1}],
    }
    with pytest.raises(ValidationError, match="ends_at must be after starts_at"):
        definition(rule, ends_at="2026-09-01T00:00:00+08:00")
    with pytest.raises(ValidationError, match="unique"):
        CampaignDefinition.model_validate(
            {
                "name": "t",
                "starts_at": "2026-10-01T00:00:00+08:00",
                "ends_at": "2026-11-01T00:00:00+08:00",
                "rules": [rule, rule],
            }
        )


def test_every_template_is_a_valid_definition() -> None:
    start = datetime(2026, 10, 1, tzinfo=TZ)
    for name, make in TEMPLATES.items():
        d = CampaignDefinition.model_validate(make(start, start + timedelta(days=61)))
        assert d.rules, name


# --- rank ----------------------------------------------------------------------------------


async def test_rank_takes_top_n_per_province_with_spec_tie_breaks() -> None:
    rule = RankRule.model_validate(
        {
            "id": "r",
            "kind": "rank",
            "top": 2,
            "owner_reward": {"kind": "prize", "amount": 1},
            "member_reward": {"kind": "ticket", "amount": 1},
        }
    )
    groups = [
        group("a", "BJ", ("u1", "u2"), activity_points=10, active_members=1),
        group("b", "BJ", ("u3",), activity_points=10, active_members=2),  # tie: more active wins
        group("c", "BJ", ("u4",), activity_points=5),
        group("d", "SH", ("u5",), bonus_points=1),
    ]
    decisions = await rank.settle(rule, OCT, InMemoryInputs(group_months=groups))
    owners = [
        (d.explanation["partition"], d.explanation["rank"], d.group_id)
        for d in decisions
        if d.role == "owner"
    ]
    assert owners == [("BJ", 1, "b"), ("SH", 1, "d"), ("BJ", 2, "a")]
    assert {d.user_id for d in decisions if d.role == "member"} == {"u1", "u2", "u3", "u5"}


async def test_rank_skips_unenrolled_dissolved_and_ineligible_groups() -> None:
    rule = RankRule.model_validate(
        {
            "id": "r",
            "kind": "rank",
            "top": 5,
            "eligibility": leaf("group.month.members", ">=", 2),
            "owner_reward": {"kind": "prize", "amount": 1},
        }
    )
    dissolved = GroupMonth(
        "x",
        "o",
        "BJ",
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 10, 5, tzinfo=UTC),
        ("u1", "u2"),
        {"members": 2},
    )
    groups = [
        group("a", members=("u1", "u2")),
        group("b", members=("u3",)),
        dissolved,
        group("c", members=("u4", "u5")),
    ]
    inputs = InMemoryInputs(group_months=groups, enrolled_groups={"a", "b", "x"})
    assert [d.group_id for d in await rank.settle(rule, OCT, inputs)] == ["a"]


async def test_rank_weights_change_the_order() -> None:
    rule = RankRule.model_validate(
        {
            "id": "r",
            "kind": "rank",
            "top": 1,
            "weights": {"growth": 0, "activity": 1, "bonus": 0},
            "owner_reward": {"kind": "prize", "amount": 1},
        }
    )
    groups = [group("a", points_growth=100), group("b", activity_points=1)]
    inputs = InMemoryInputs(group_months=groups)
    assert [d.group_id for d in await rank.settle(rule, OCT, inputs)] == ["b"]


# --- scaled (tribe chief) ------------------------------------------------------------------


def test_member_of_two_considered_groups_is_not_effective() -> None:
    g1 = group("g1", members=("a", "b", "c"))
    g2 = group("g2", members=("c", "d"))
    assert effective_active_members([g1, g2], {"a", "c", "d"}) == {"g1": 1, "g2": 1}


def test_scaled_credit_is_per_effective_member_capped_and_revocable() -> None:
    rule = ScaledRule.model_validate(
        {
            "id": "s",
            "kind": "scaled",
            "metric": "group.month.effective_active_members",
            "eligibility": {
                "all": [
                    leaf("group.month.members", ">=", 3),
                    leaf("group.month.active_ratio", ">=", 0.8),
                ]
            },
            "reward_kind": "credit_fen",
            "amount_per_unit": 100,
            "cap": 250,
            "revoke_if_group_dissolved": True,
        }
    )
    big = group("big", members=("a", "b", "c", "d"), active_members=4)
    low = group("low", members=("e", "f", "g", "h", "i"), active_members=3)  # 60% active
    decisions = scaled.group_grants(rule, OCT, [big, low], set("abcdefghi"))
    assert [(d.user_id, d.items, d.revocable) for d in decisions] == [
        ("owner-big", (("credit_fen", 250),), True)
    ]
    assert decisions[0].fulfil_by == date(2026, 11, 10)


# --- lottery and draws ---------------------------------------------------------------------


def test_draw_picks_smallest_hmac_and_anyone_can_recompute_it() -> None:
    seed = draws.new_seed()
    entries = draws.frozen(f"u{i}" for i in range(100))
    winners = draws.draw(seed, entries, 5, repeat_winners=False)
    by_hand = sorted(
        entries, key=lambda e: hmac.new(seed.encode(), e.encode(), hashlib.sha256).hexdigest()
    )[:5]
    assert winners == by_hand
    assert draws.commitment(seed) == hashlib.sha256(seed.encode()).hexdigest()
    assert draws.entries_digest(entries) == hashlib.sha256("\n".join(entries).encode()).hexdigest()


def test_unique_draw_skips_a_winners_other_tickets() -> None:
    entries = draws.frozen([*draws.ticket_entries("a", 50), "b#1", "c#1"])
    winners = draws.draw("seed", entries, 3, repeat_winners=False)
    assert sorted(draws.entrant(w) for w in winners) == ["a", "b", "c"]
    repeat = draws.draw("seed", entries, 3, repeat_winners=True)
    assert len(repeat) == 3


def test_lottery_tickets_come_from_a_metric_and_repeat_wins_add_up() -> None:
    rule = LotteryRule.model_validate(
        {
            "id": "f",
            "kind": "lottery",
            "period": "month",
            "tickets": "user.month.friends_added",
            "winners": 10,
            "repeat_winners": True,
            "rewards": [{"kind": "points", "amount": 50}],
        }
    )
    users = {"a": {"user.month.friends_added": 3.0}, "b": {"user.month.friends_added": 0.0}}
    entries = lottery.entries(rule, users)
    assert entries == ["a#1", "a#2", "a#3"]
    (grant,) = lottery.grants(rule, OCT, draws.draw("s", entries, 10, True))
    assert grant.items == (("points", 150),) and grant.user_id == "a"


# --- thresholds, budgets, periods, lifecycle ---------------------------------------------


def test_threshold_fires_only_when_condition_holds_and_explains_why() -> None:
    d = definition(
        TEMPLATES["invite_friends"](
            datetime(2026, 10, 1, tzinfo=TZ), datetime(2026, 11, 1, tzinfo=TZ)
        )["rules"][0]
    )
    rule = d.rules[0]
    assert rule.kind == "threshold"
    day = day_period(date(2026, 10, 3), TZ)
    assert (
        threshold.decision(rule, "campaign", day, "u", {"user.campaign.new_friends_added": 1})
        is None
    )
    fired = threshold.decision(rule, "campaign", day, "u", {"user.campaign.new_friends_added": 2})
    assert fired is not None and fired.key == ("two-friends", "user", "u", "campaign")
    assert (
        fired.explanation["conditions"][0]["actual"] == 2
        and fired.explanation["conditions"][0]["holds"]
    )


def test_budget_is_never_overspent_and_grants_are_whole() -> None:
    demands = [{"credit_fen": 200, "sms": 20}] * 3 + [{"credit_fen": 100}]
    statuses, spent = allocate(demands, {"credit_fen": 500, "sms": 40})
    assert statuses == [GRANTED, GRANTED, BUDGET_EXHAUSTED, GRANTED]
    assert spent == {"credit_fen": 500, "sms": 40}


def test_unbudgeted_kinds_are_unlimited() -> None:
    statuses, _ = allocate([{"points": 10**9}], {})
    assert statuses == [GRANTED]


def test_periods_in_window_and_grace() -> None:
    start = datetime(2026, 10, 30, 12, tzinfo=TZ)
    days = periods_in_window("day", start, start + timedelta(days=2), TZ)
    assert [p.label for p in days] == ["2026-10-30", "2026-10-31", "2026-11-01"]
    assert days[0].settle_due() == datetime(2026, 10, 31, 2, tzinfo=TZ)
    months = periods_in_window("month", start, start + timedelta(days=2), TZ)
    assert [p.label for p in months] == ["2026-10", "2026-11"]
    assert months[0].settle_due() == datetime(2026, 11, 3, tzinfo=TZ)
    assert fulfil_by(date(2026, 12, 5), 10) == date(2027, 1, 10)


def test_lifecycle_transitions_and_self_approval() -> None:
    assert lifecycle.check_transition("draft", "submit") == "submitted"
    assert lifecycle.check_transition("paused", "resume") == "active"
    with pytest.raises(Conflict, match="cannot approve a version that is draft"):
        lifecycle.check_transition("draft", "approve")
    with pytest.raises(Forbidden):
        lifecycle.check_approver(lifecycle.VersionState(1, "submitted", "alice", "bob"), "bob")
    lifecycle.check_approver(lifecycle.VersionState(1, "submitted", "alice", "alice"), "carol")
    lifecycle.check_editable("active")  # every save is a new version: drafts of any campaign
    with pytest.raises(Conflict):
        lifecycle.check_editable("ended")


def test_text_that_cannot_be_stored_is_refused_naming_where() -> None:
    rule = {
        "id": "x",
        "kind": "lottery",
        "winners": 1,
        "rewards": [{"kind": "points", "amount": 1}],
    }
    with pytest.raises(ValidationError, match=r"description: contains a character"):
        definition(rule, description="nul\x00here")
