"""The rule language the seeds need (SPEC §9, §10): weeks and years, days of the week, the rule's
own period, caps on winners, a backtest that sees only the past, clear errors."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.periods import Window, period_of_label, period_on
from services.rewards.domain.rules import lottery, rank, threshold
from services.rewards.domain.rules.base import NewValues
from services.rewards.domain.rules.lottery import LotteryRule
from services.rewards.domain.rules.rank import RankRule
from services.rewards.domain.rules.threshold import ThresholdRule
from services.rewards.domain.templates import TEMPLATES, weekend_chat_boost
from tests.unit.rewards_inputs import TZ, InMemoryInputs, group

OCT = Window(datetime(2026, 10, 1, tzinfo=TZ), datetime(2026, 11, 1, tzinfo=TZ))
SAT, SUN = date(2026, 10, 3), date(2026, 10, 4)


def leaf(metric: str, op: str = ">=", value: float = 1) -> dict[str, Any]:
    return {"metric": metric, "op": op, "value": value}


def weekend_rule(**overrides: Any) -> ThresholdRule:
    doc = weekend_chat_boost(OCT.starts_at, OCT.ends_at)["rules"][0] | overrides
    return ThresholdRule.model_validate(doc)


# -- periods -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "label", "first", "last"),
    [
        (date(2026, 10, 3), "2026-W40", date(2026, 9, 28), date(2026, 10, 4)),
        (date(2026, 12, 31), "2026-W53", date(2026, 12, 28), date(2027, 1, 3)),
        (date(2027, 1, 3), "2026-W53", date(2026, 12, 28), date(2027, 1, 3)),
        (date(2027, 1, 4), "2027-W01", date(2027, 1, 4), date(2027, 1, 10)),
        (date(2025, 12, 29), "2026-W01", date(2025, 12, 29), date(2026, 1, 4)),
    ],
)
def test_a_week_is_the_iso_week_monday_first_in_local_time(
    day: date, label: str, first: date, last: date
) -> None:
    p = period_on(day, "week", TZ)
    assert (p.label, p.first_day, p.last_day) == (label, first, last)
    assert p.start == datetime(first.year, first.month, first.day, tzinfo=TZ)
    assert p.start.utcoffset() is not None and p.start.astimezone(UTC).hour == 16  # 00:00 +08
    assert period_of_label(label, TZ) == p


def test_a_year_runs_from_local_new_year_to_the_next() -> None:
    p = period_on(date(2026, 12, 31), "year", TZ)
    assert (p.label, p.first_day, p.last_day) == ("2026", date(2026, 1, 1), date(2026, 12, 31))
    assert p.end == datetime(2027, 1, 1, tzinfo=TZ)
    assert p.end.astimezone(UTC) == datetime(2026, 12, 31, 16, tzinfo=UTC)
    assert period_of_label("2026", TZ) == p


def test_a_week_grant_is_fulfilled_the_month_after_the_week_ends() -> None:
    r = weekend_rule(id="w", max_grants=None)
    values = {"user.period.messages_mobile": 30.0}
    week = period_on(date(2026, 12, 31), "week", TZ)  # ends on 2027-01-03
    d = threshold.decision(r, week.label, week, "u", values, fired_on=date(2027, 1, 3))
    assert d is not None and d.fulfil_by == date(2027, 2, 10)


# -- days of the week and the rule's own period ---------------------------------------------


async def test_a_weekend_rule_sums_only_saturday_and_sunday_up_to_the_day() -> None:
    days = {
        ("a", date(2026, 10, 2)): {"messages_mobile": 100.0},  # Friday: not summed
        ("a", SAT): {"messages_mobile": 20.0},
        ("a", SUN): {"messages_mobile": 15.0},
        ("b", SAT): {"messages_mobile": 31.0},
    }
    inputs = InMemoryInputs(window=OCT, user_days=days)
    decided = await threshold.replay(weekend_rule(), SAT, SUN, datetime.now(UTC), inputs)
    assert [(d.user_id, d.period, d.explanation["fired_on"]) for d in decided] == [
        ("b", "2026-W40", "2026-10-03"),
        ("a", "2026-W40", "2026-10-04"),
    ]
    (a_leaf,) = decided[1].explanation["conditions"]
    assert a_leaf["actual"] == 35.0  # Saturday's 20 + Sunday's 15, never Friday's


async def test_a_backtest_up_to_saturday_never_counts_sunday() -> None:
    days = {("a", SAT): {"messages_mobile": 20.0}, ("a", SUN): {"messages_mobile": 15.0}}
    inputs = InMemoryInputs(window=OCT, user_days=days)
    assert await threshold.replay(weekend_rule(), SAT, SAT, datetime.now(UTC), inputs) == []


async def test_the_live_evaluation_and_the_backtest_fire_on_the_same_day_with_the_same_value() -> (
    None
):
    days = {("a", SAT): {"messages_mobile": 20.0}, ("a", SUN): {"messages_mobile": 15.0}}
    live: list[Any] = []
    stored: dict[tuple[str, date], dict[str, float]] = {}
    for key in sorted(days, key=lambda k: k[1]):  # as the days arrive
        stored[key] = days[key]
        inputs = InMemoryInputs(window=OCT, user_days=dict(stored))
        live += await threshold.evaluate(
            weekend_rule(), NewValues(user_days={key: days[key]}), inputs
        )
    backtest = await threshold.replay(
        weekend_rule(), SAT, SUN, datetime.now(UTC), InMemoryInputs(window=OCT, user_days=days)
    )
    assert [d.explanation for d in live] == [d.explanation for d in backtest]
    assert live[0].explanation["fired_on"] == "2026-10-04"


async def test_a_late_saturday_fires_sunday_already_stored() -> None:
    days = {("a", SAT): {"messages_mobile": 20.0}, ("a", SUN): {"messages_mobile": 15.0}}
    inputs = InMemoryInputs(window=OCT, user_days=days)  # Sunday came first, then Saturday
    decided = await threshold.evaluate(
        weekend_rule(), NewValues(user_days={("a", SAT): days[("a", SAT)]}), inputs
    )
    assert [d.explanation["fired_on"] for d in decided] == ["2026-10-04"]


def test_days_of_week_are_one_to_seven_each_once() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 7"):
        weekend_rule(days_of_week=[6, 8])
    with pytest.raises(ValidationError, match="each day at most once"):
        weekend_rule(days_of_week=[6, 6])


# -- caps on winners --------------------------------------------------------------------------


async def test_max_grants_go_first_come_by_the_day_met_then_user_id() -> None:
    days = {
        ("zed", SAT): {"messages_mobile": 40.0},
        ("amy", SAT): {"messages_mobile": 30.0},
        ("bob", SAT): {"messages_mobile": 10.0},
        ("bob", SUN): {"messages_mobile": 25.0},
        ("abe", SUN): {"messages_mobile": 50.0},
    }
    r = weekend_rule(max_grants={"per_period": 2})
    decided = await threshold.replay(
        r, SAT, SUN, datetime.now(UTC), InMemoryInputs(window=OCT, user_days=days)
    )
    capped = r_cap(r, decided)
    assert [d.user_id for d in capped] == ["amy", "zed"]  # Saturday's, by id; Sunday's too late
    assert capped[0].explanation["max_grants"] == {
        "order": threshold.FIRST_COME, "place_in_period": 1, "place_in_campaign": 1,
        "per_period": 2,
    }  # fmt: skip


def r_cap(rule: ThresholdRule, decided: list[Any], *counts: Any) -> list[Any]:
    per_period, total = counts if counts else ({}, 0)
    return threshold.first_come(rule, decided, per_period, total)


def test_max_grants_count_the_winners_already_recorded() -> None:
    r = weekend_rule(max_grants={"per_period": 3, "per_campaign": 4})
    week = period_on(SAT, "week", TZ)
    values = {"user.period.messages_mobile": 30.0}
    ds = [threshold.decision(r, week.label, week, u, values, fired_on=SAT) for u in "abc"]
    kept = r_cap(r, [d for d in ds if d], {week.label: 1}, 3)
    assert [d.user_id for d in kept] == ["a"]  # the campaign's fourth and last place


def test_per_period_cap_needs_a_period() -> None:
    with pytest.raises(ValidationError, match="once per campaign"):
        weekend_rule(once="campaign", max_grants={"per_period": 1})


# -- years, lotteries, tickets from the ledger ---------------------------------------------


async def test_a_year_ranking_sums_the_months_vitality() -> None:
    r = RankRule.model_validate(
        {"id": "y", "kind": "rank", "period": "year", "partition": "none", "top": 1,
         "owner_reward": {"kind": "prize", "amount": 1}}
    )  # fmt: skip
    months = [group("steady", month=date(2026, m, 1), activity_points=10.0) for m in (1, 2, 3)] + [
        group("spike", month=date(2026, 3, 1), activity_points=25.0)
    ]
    year = period_on(date(2026, 6, 1), "year", TZ)
    window = Window(datetime(2026, 1, 1, tzinfo=TZ), datetime(2027, 1, 1, tzinfo=TZ))
    (won,) = await rank.settle(r, year, InMemoryInputs(window=window, group_months=months))
    assert (won.group_id, won.period, won.explanation["vitality"]) == ("steady", "2026", 30.0)


async def test_a_weekly_lottery_draws_on_the_weeks_sums_and_ledger_tickets() -> None:
    r = LotteryRule.model_validate(
        {"id": "wk", "kind": "lottery", "period": "week", "winners": 100, "repeat_winners": True,
         "tickets": "user.period.friends_added",
         "tickets_from": {"campaign": "My Fetion, my group", "rule_id": "top20-province"},
         "rewards": [{"kind": "credit_fen", "amount": 500}]}
    )  # fmt: skip
    week = period_on(SAT, "week", TZ)
    days = {("a", SAT): {"friends_added": 1.0}, ("a", SUN): {"friends_added": 1.0}}
    inputs = InMemoryInputs(
        window=OCT,
        user_days=days,
        tickets={("My Fetion, my group", "top20-province", week.label): {"m": 1}},
    )
    await lottery.settle(r, week, inputs)
    assert inputs.drawn == [("wk", "2026-W40", ["a#1", "a#2", "m#1"])]


async def test_members_of_enrolled_groups_enter_a_draw_others_not() -> None:
    r = LotteryRule.model_validate(
        {"id": "d", "kind": "lottery", "period": "day", "winners": 10,
         "eligibility": {"all": [leaf("user.day.checkins"), leaf("user.member_of_enrolled_group")]},
         "rewards": [{"kind": "data_mb", "amount": 100}]}
    )  # fmt: skip
    day = period_on(SAT, "day", TZ)
    days = {(u, SAT): {"checkins": 1.0} for u in ("in", "out")}
    inputs = InMemoryInputs(
        window=OCT,
        user_days=days,
        group_months=[group("g", members=("in",), month=date(2026, 10, 1))],
        enrolled_groups={"g"},
    )
    await lottery.settle(r, day, inputs)
    assert inputs.drawn == [("d", "2026-10-03", ["in"])]


# -- clear errors ---------------------------------------------------------------------------


def test_an_unknown_metric_names_the_nearest_valid_one() -> None:
    with pytest.raises(ValidationError, match=r"did you mean user\.campaign\.messages_mobile\?"):
        weekend_rule(condition=leaf("user.campaign.messages_mobil"))
    with pytest.raises(ValidationError, match=r"did you mean user\.period\.messages_mobile\?"):
        weekend_rule(condition=leaf("user.periods.messages_mobile"))


def test_a_bad_rule_id_says_what_is_allowed_in_words() -> None:
    with pytest.raises(ValidationError, match="lowercase letters, digits, '_' or '-'"):
        weekend_rule(id="Weekend Boost!")


def test_every_template_validates() -> None:
    for make in TEMPLATES.values():
        CampaignDefinition.model_validate(make(OCT.starts_at, OCT.ends_at))


async def test_a_capped_backtest_keeps_only_possible_winners_and_decides_the_same() -> None:
    days = {(f"u{i:03d}", SAT if i % 3 else SUN): {"messages_mobile": 30.0} for i in range(300)}
    r = weekend_rule(max_grants={"per_period": 7})
    inputs = InMemoryInputs(window=OCT, user_days=days)
    kept = await threshold.user_decisions(r, inputs, SAT, SUN, capped_here=True)
    every = await threshold.user_decisions(r, inputs, SAT, SUN)
    assert len(kept) < 2 * 7 < len(every)
    assert r_cap(r, kept) == r_cap(r, every)
