"""Prize integrity in rewards' domain (SPEC §10, §14): anomaly flags as condition values,
exclusions that never win in any rule kind (the next one wins, and the explanation says who
was passed over), the review hold's statuses and who may review, and how a settled period's
change is measured. Pure: no database, no broker."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import orjson
import pytest
from pydantic import ValidationError

from services.rewards.domain import conditions
from services.rewards.domain.after_settlement import compare, subject_scope, watched
from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.exclusions import Exclusions, without_excluded
from services.rewards.domain.periods import day_period, month_period
from services.rewards.domain.review import VersionPeople, check_reviewer, held, period_days
from services.rewards.domain.rules import lottery, rank, scaled, threshold
from services.rewards.domain.rules.base import NewValues
from services.rewards.domain.rules.lottery import LotteryRule
from services.rewards.domain.rules.rank import RankRule
from services.rewards.domain.rules.scaled import ScaledRule
from services.rewards.domain.rules.threshold import ThresholdRule
from services.rewards.domain.templates import TEMPLATES
from services.rewards.store.snapshots import parse
from shared.errors import Forbidden
from tests.unit.rewards_inputs import TZ, InMemoryInputs, group

OCT = month_period(date(2026, 10, 1), TZ)
DAY = day_period(date(2026, 10, 3), TZ)
REWARD = {"kind": "points", "amount": 10}
M = TypeVar("M", RankRule, ThresholdRule, LotteryRule, ScaledRule)
DEFAULTS: dict[str, dict[str, Any]] = {
    "rank": {"top": 1, "owner_reward": REWARD},
    "threshold": {
        "condition": {"metric": "user.day.checkins", "op": ">=", "value": 1},
        "rewards": [REWARD],
    },
    "lottery": {"winners": 1, "rewards": [REWARD]},
    "scaled": {
        "metric": "group.month.active_members",
        "reward_kind": "credit_fen",
        "amount_per_unit": 100,
    },
}


def a(model: type[M], **fields: Any) -> M:
    (kind,) = typing.get_args(model.model_fields["kind"].annotation)
    return model.model_validate({"id": f"{kind}-rule", "kind": kind, **DEFAULTS[kind], **fields})


def leaf(metric: str, op: str = ">=", value: float = 1) -> dict[str, Any]:
    return {"metric": metric, "op": op, "value": value}


def flag(name: str, **values: float) -> dict[str, Any]:
    return {"name": name, "reason": f"{name} tripped", "values": values}


def user_day_record(user: str, day: str, flags: list[dict[str, Any]], **counters: int) -> bytes:
    from shared.metric_fields import DAY_POINTS, USER_DAY_COUNTERS

    doc: dict[str, Any] = {"v": 1, "entity": "user", "grain": "day", "id": user, "period": day}
    doc |= {c: counters.get(c, 0) for c in USER_DAY_COUNTERS + DAY_POINTS}
    return orjson.dumps({**doc, "flags": flags})


def group_month_record(gid: str, month: str, flags: list[dict[str, Any]]) -> bytes:
    from shared.metric_fields import GROUP_MONTH_COUNTERS

    doc: dict[str, Any] = {"v": 1, "entity": "group", "grain": "month", "id": gid,
                           "period": month, "vitality": 0.0, "owner_id": "o", "name": None,
                           "province": "BJ", "created_at": None, "dissolved_at": None,
                           "member_ids": []}  # fmt: skip
    doc |= {c: 0 for c in GROUP_MONTH_COUNTERS}
    return orjson.dumps({**doc, "flags": flags})


# --- flags as condition values -----------------------------------------------------------


def test_flag_metrics_are_names_a_condition_may_use() -> None:
    for name in (
        "group.month.flagged",
        "group.month.flags.late_joins",
        "group.month.flags.dominant_member",
        "user.day.flagged",
        "user.day.flags.message_rate",
        "user.day.flags.points_spike",
        "user.day.flags.lockstep",
    ):
        assert conditions.parse_metric(name) == name


def test_an_unknown_flag_name_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(conditions.ConditionError) as err:
        conditions.parse({"not": leaf("group.month.flags.rigged")})
    assert "not.metric" in str(err.value) and "late_joins" in str(err.value)
    with pytest.raises(ValidationError, match=r"user\.day\.flags\.bot"):
        a(RankRule, eligibility=leaf("user.day.flags.bot"))


def test_user_day_flags_only_where_rules_have_user_day_scopes() -> None:
    a(ThresholdRule, condition={"not": leaf("user.day.flags.lockstep")})  # a day rule: fine
    # a threshold is evaluated day by day whatever its period: the day's flags are there
    a(ThresholdRule, period="month", condition=leaf("user.day.flags.lockstep"))
    with pytest.raises(ValidationError, match="not available here"):
        a(RankRule, eligibility={"not": leaf("user.day.flagged")})
    a(RankRule, eligibility={"metric": "group.month.flagged", "op": "==", "value": 0})


def test_a_records_flags_become_zero_one_values() -> None:
    day = parse(user_day_record("u", "2026-10-03", [flag("lockstep", accounts=12)], checkins=1))
    assert day.counters["flagged"] == 1.0
    assert day.counters["flags.lockstep"] == 1.0 and day.counters["flags.message_rate"] == 0.0
    assert day.flags == ({"name": "lockstep", "reason": "lockstep tripped",
                          "values": {"accounts": 12}},)  # fmt: skip
    clean = parse(group_month_record("g", "2026-10", []))
    assert clean.group is not None
    values = clean.group.values()
    assert values["group.month.flagged"] == 0.0 and values["group.month.flags.late_joins"] == 0.0
    rigged = parse(group_month_record("g", "2026-10", [flag("late_joins", share=0.9)]))
    assert rigged.group is not None and rigged.group.values()["group.month.flagged"] == 1.0


async def test_a_rank_eligibility_can_leave_flagged_groups_out() -> None:
    r = a(RankRule, eligibility={"metric": "group.month.flagged", "op": "==", "value": 0})
    groups = [
        dataclasses.replace(
            group("rigged", activity_points=100, flagged=1),
            counters={"activity_points": 100.0, "flagged": 1.0, "flags.late_joins": 1.0},
        ),
        group("honest", activity_points=10, flagged=0),
    ]
    (won,) = await rank.settle(r, OCT, InMemoryInputs(group_months=groups))
    assert won.group_id == "honest"


async def test_a_day_threshold_skips_a_flagged_day() -> None:
    no_bot = leaf("user.day.flags.message_rate", "==", 0)
    r = a(ThresholdRule, condition={"all": [leaf("user.day.checkins"), no_bot]})
    days = {
        ("bot", DAY.first_day): {"checkins": 1.0, "flagged": 1.0, "flags.message_rate": 1.0},
        ("person", DAY.first_day): {"checkins": 1.0, "flagged": 0.0, "flags.message_rate": 0.0},
    }
    decided = await threshold.evaluate(r, NewValues(user_days=days), InMemoryInputs(user_days=days))
    assert [d.user_id for d in decided] == ["person"]


# --- exclusions never win ----------------------------------------------------------------


async def test_an_excluded_group_is_passed_over_and_the_next_one_wins() -> None:
    r = a(RankRule, top=2, member_reward={"kind": "ticket", "amount": 1})
    groups = [
        group("first", members=("m1",), activity_points=30),
        group("second", members=("m2", "cheat"), activity_points=20),
        group("third", members=("m3",), activity_points=10),
        group("fourth", activity_points=5),
    ]
    inputs = InMemoryInputs(
        group_months=groups, excluded=Exclusions(frozenset({"cheat"}), frozenset({"first"}))
    )
    decided = await rank.settle(r, OCT, inputs)
    assert [(d.role, d.user_id) for d in decided] == [
        ("owner", "owner-second"),
        ("member", "m2"),
        ("owner", "owner-third"),
        ("member", "m3"),
    ]
    second = decided[0].explanation
    assert second["rank"] == 1 and second["passed_over_excluded"] == ["first"]
    assert second["excluded_users"] == ["cheat"]
    assert decided[2].explanation["rank"] == 2


async def test_an_excluded_owner_gets_no_prize_but_the_members_of_the_group_do() -> None:
    r = a(RankRule, member_reward={"kind": "ticket", "amount": 1})
    inputs = InMemoryInputs(
        group_months=[group("g", members=("m1",), activity_points=5)],
        excluded=Exclusions(users=frozenset({"owner-g"})),
    )
    decided = await rank.settle(r, OCT, inputs)
    assert [(d.role, d.user_id) for d in decided] == [("member", "m1")]
    assert decided[0].explanation["excluded_users"] == ["owner-g"]


async def test_an_excluded_user_never_wins_a_draw_and_the_next_entry_does() -> None:
    r = a(LotteryRule, winners=2)
    days = {(u, DAY.first_day): {"checkins": 1.0} for u in ("a", "b", "c", "cheat")}
    excluded = Exclusions(users=frozenset({"cheat"}))
    for seed in ("s1", "s2", "s3", "s4", "s5", "s6"):
        inputs = InMemoryInputs(user_days=days, excluded=excluded, seed=seed)
        decided = await lottery.settle(r, DAY, inputs)
        assert len(decided) == 2 and "cheat" not in {d.user_id for d in decided}
        assert all(d.explanation["excluded_entrants"] == ["cheat"] for d in decided)
        assert "cheat" not in inputs.drawn[0][2]


async def test_an_excluded_user_or_group_never_meets_a_threshold() -> None:
    r = a(ThresholdRule)
    days = {(u, DAY.first_day): {"checkins": 1.0} for u in ("u", "cheat")}
    inputs = InMemoryInputs(user_days=days, excluded=Exclusions(users=frozenset({"cheat"})))
    decided = await threshold.evaluate(r, NewValues(user_days=days), inputs)
    assert [d.user_id for d in decided] == ["u"]
    g = a(ThresholdRule, entity="group", period="month",
          condition=leaf("group.month.activity_points"))  # fmt: skip
    groups = [group(x, month=OCT.first_day, activity_points=5) for x in ("ok", "bad", "boss")]
    inputs = InMemoryInputs(excluded=Exclusions(frozenset({"owner-boss"}), frozenset({"bad"})))
    decided = await threshold.evaluate(g, NewValues(groups=groups), inputs)
    assert [d.group_id for d in decided] == ["ok"]


async def test_an_excluded_user_or_group_gets_no_scaled_reward() -> None:
    r = a(ScaledRule)
    groups = [group(x, members=("m",), active_members=3) for x in ("ok", "bad")]
    inputs = InMemoryInputs(group_months=groups, excluded=Exclusions(groups=frozenset({"bad"})))
    assert [d.group_id for d in await scaled.settle(r, OCT, inputs)] == ["ok"]
    u = a(ScaledRule, entity="user", period="day", metric="user.day.checkins")
    days = {(x, DAY.first_day): {"checkins": 2.0} for x in ("ok", "cheat")}
    inputs = InMemoryInputs(user_days=days, excluded=Exclusions(users=frozenset({"cheat"})))
    assert [d.user_id for d in await scaled.settle(u, DAY, inputs)] == ["ok"]


def test_settlement_drops_any_decision_for_an_excluded_subject() -> None:
    from services.rewards.domain.decisions import GrantDecision

    def d(user: str, group_id: str | None = None) -> GrantDecision:
        return GrantDecision("r", "user", user, "2026-10", (("points", 1),), date(2026, 11, 10),
                             group_id)  # fmt: skip

    kept, dropped = without_excluded(
        [d("a"), d("cheat"), d("b", "bad")], Exclusions(frozenset({"cheat"}), frozenset({"bad"}))
    )
    assert [x.user_id for x in kept] == ["a"] and [x.user_id for x in dropped] == ["cheat", "b"]


# --- review hold -------------------------------------------------------------------------


def test_a_reviewed_period_holds_what_would_be_granted() -> None:
    assert held(["granted", "budget_exhausted", "granted"]) == ["held", "budget_exhausted", "held"]


def test_the_author_or_submitter_of_the_version_cannot_review_its_period() -> None:
    versions = [VersionPeople(1, "author-key", "submitter-key")]
    for who in ("author-key", "submitter-key"):
        with pytest.raises(Forbidden) as err:
            check_reviewer(versions, who)
        assert err.value.code == "self_review" and "neither authored nor submitted" in str(
            err.value.detail
        )
    check_reviewer(versions, "another-approver")


def test_my_fetion_is_reviewed() -> None:
    now = datetime(2026, 10, 1, tzinfo=UTC)
    doc = TEMPLATES["my_fetion_my_group"](now, datetime(2026, 12, 1, tzinfo=UTC))
    assert CampaignDefinition.model_validate(doc).review is True
    others = [n for n in TEMPLATES if not n.startswith("my_fetion")]
    assert not any(CampaignDefinition.model_validate(TEMPLATES[n](now, now.replace(month=11)))
                   .review for n in others)  # fmt: skip


def test_a_periods_days() -> None:
    assert period_days("2026-02", date(2026, 2, 1)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert period_days("2026-02-03", date(2026, 2, 3)) == (date(2026, 2, 3), date(2026, 2, 3))


# --- after settlement ----------------------------------------------------------------------


def test_a_change_is_measured_on_the_metrics_the_rule_reads_in_its_own_scope() -> None:
    r = a(RankRule, eligibility=leaf("group.month.members", ">=", 3))
    assert subject_scope(r) == "group.month"
    metrics = watched(rank.reads(r), "group.month")
    assert metrics == {"group.month.vitality", "group.month.active_members",
                       "group.month.members"}  # fmt: skip
    settled = {"group.month.vitality": 100.0, "group.month.members": 5.0}
    moved = compare("g", metrics, {"group.month.vitality": 100100.0,
                                   "group.month.members": 5.0}, settled, False)  # fmt: skip
    assert moved.changed and moved.max_abs_delta == 100000.0
    same = compare("g", metrics, {**settled, "group.month.other": 7.0}, settled, False)
    assert not same.changed
    new = compare("late", metrics, {"group.month.vitality": 1.0}, None, True)
    assert new.changed and new.new_subject
    day_lottery = a(LotteryRule, eligibility=leaf("user.campaign.checkins"))
    assert subject_scope(day_lottery) == "user.day"
    assert watched(lottery.reads(day_lottery), "user.day") == frozenset()
