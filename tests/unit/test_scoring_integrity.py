"""Prize integrity in scoring (SPEC §14): who may state group facts, and the anomaly flags —
each rule fires on its planted case and not on the ordinary one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.scoring.domain.anomalies import (
    AnomalyThresholds,
    GroupMonthInputs,
    UserDayInputs,
    dominant_member,
    group_month_flags,
    late_joins,
    lockstep,
    message_rate,
    points_spike,
    user_day_flags,
)
from services.scoring.domain.batch import epoch_minute, plan_batch
from services.scoring.domain.group_facts import NO_FACTS, GroupFacts, screen
from shared.contract import Authority, Envelope, validate_event
from tests.builders import make_event

T = AnomalyThresholds()
TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 10, 4, 0, tzinfo=UTC)


def envelope(authority: Authority = "platform", source: str = "k1", **kw: Any) -> Envelope:
    kw.setdefault("at", AT)
    event = validate_event(make_event(**kw), None)
    assert not hasattr(event, "code"), event
    return Envelope(event=event, received_at=AT, source=source, authority=authority)


def created(user: str = "owner", authority: Authority = "platform", **kw: Any) -> Envelope:
    return envelope(authority, type="group_created", user_id=user, group_id="g1", **kw)


# -- group facts ---------------------------------------------------------------------------


def test_first_group_created_defines_the_group_and_a_backdated_second_is_refused() -> None:
    first = screen([created("owner")], {})
    assert first.facts["g1"].owner_id == "owner" and not first.refused
    second = screen([created("hijacker", at=AT - timedelta(days=20))], first.facts)
    assert second.accepted == [] and second.facts == {}
    assert [r.reason for r in second.refused] == ["group_already_created"]


def test_second_group_created_in_the_same_batch_is_refused_whatever_its_time() -> None:
    out = screen([created("owner"), created("hijacker", at=AT - timedelta(days=1))], {})
    assert out.facts["g1"].owner_id == "owner"
    assert [(r.user_id, r.reason) for r in out.refused] == [("hijacker", "group_already_created")]


def test_a_strangers_dissolution_is_refused_and_the_owners_stands() -> None:
    facts = {"g1": GroupFacts(created=True, creator_id="owner")}
    stranger = envelope("user", type="group_dissolved", user_id="stranger", group_id="g1")
    owner = envelope("user", type="group_dissolved", user_id="owner", group_id="g1")
    out = screen([stranger, owner], facts)
    assert out.accepted == [owner]
    assert [r.reason for r in out.refused] == ["not_group_owner"]


def test_platform_and_import_dissolve_any_group_a_relay_none() -> None:
    facts = {"g1": GroupFacts(created=True, creator_id="owner")}
    by = {a: envelope(a, type="group_dissolved", user_id="ops", group_id="g1") for a in
          ("platform", "import", "relay")}  # fmt: skip
    out = screen(list(by.values()), facts)
    assert out.accepted == [by["platform"], by["import"]]
    assert [r.reason for r in out.refused] == ["authority_not_allowed"]


def test_owner_transfer_needs_platform_and_the_new_owner_may_then_dissolve() -> None:
    facts = {"g1": GroupFacts(created=True, creator_id="owner")}
    by_user = envelope("user", type="group_owner_changed", user_id="thief", group_id="g1")
    by_platform = envelope("platform", type="group_owner_changed", user_id="heir", group_id="g1")
    heir_dissolves = envelope("user", type="group_dissolved", user_id="heir", group_id="g1")
    out = screen([by_user, by_platform, heir_dissolves], facts)
    assert out.accepted == [by_platform, heir_dissolves]
    assert [r.reason for r in out.refused] == ["authority_not_allowed"]
    assert out.facts["g1"].owner_id == "heir"


def test_the_latest_transfer_by_time_wins_in_any_order() -> None:
    early = envelope(type="group_owner_changed", user_id="a", group_id="g1", at=AT)
    late = envelope(type="group_owner_changed", user_id="b", group_id="g1", at=AT + timedelta(1))
    base = {"g1": GroupFacts(created=True, creator_id="owner")}
    assert screen([early, late], base).facts["g1"].owner_id == "b"
    assert screen([late, early], base).facts["g1"].owner_id == "b"


def test_a_creation_after_a_transfer_keeps_the_transferred_owner() -> None:
    moved = screen([envelope(type="group_owner_changed", user_id="heir", group_id="g1")], {})
    out = screen([created("owner")], moved.facts)
    assert out.facts["g1"].owner_id == "heir" and out.facts["g1"].creator_id == "owner"


def test_server_only_types_from_a_user_token_or_relay_are_refused() -> None:
    events = [
        envelope(a, type=t, user_id="u1")
        for a in ("user", "relay")
        for t in ("points", "bonus_card", "group_created")
    ]
    out = screen(events, {})
    assert out.accepted == [] and {r.reason for r in out.refused} == {"authority_not_allowed"}
    assert NO_FACTS.owner_id is None


def test_client_types_pass_whoever_vouched() -> None:
    events = [envelope(a, type="message", user_id="u1") for a in ("user", "relay", "platform")]
    assert screen(events, {}).accepted == events


# -- what the flags read, kept by the plan -------------------------------------------------


def test_the_plan_counts_messages_per_minute_and_fingerprints_per_source() -> None:
    bot = [
        envelope(source="relay-1", user_id="bot", at=AT + timedelta(seconds=i)) for i in range(3)
    ]
    plan = plan_batch(bot, TZ)
    assert plan.minute_messages[("bot", epoch_minute(AT))] == 3
    day = date(2026, 11, 10)
    fingerprint = plan.source_days[("bot", day, "relay-1")]
    assert (fingerprint.events, fingerprint.minute_sum) == (3, 3 * epoch_minute(AT))


def test_the_plan_counts_joins_and_the_creators_join_by_local_day() -> None:
    plan = plan_batch(
        [created("owner"), envelope(type="group_join", user_id="m1", group_id="g1")], TZ
    )
    day = date(2026, 11, 10)
    assert plan.join_days == {("g1", day, day): 2}


def test_a_clients_join_is_heard_when_received_a_servers_when_dated() -> None:
    """A join backdated into a closed month is heard the day it was sent (late_joins counts
    it as late); the platform's word and imports are heard on the day they are dated."""
    backdated = envelope("user", type="group_join", user_id="m1", group_id="g1",
                         at=AT - timedelta(days=20))  # fmt: skip
    imported = envelope("import", type="group_join", user_id="m2", group_id="g1",
                        at=AT - timedelta(days=20))  # fmt: skip
    plan = plan_batch([backdated, imported], TZ)
    dated = date(2026, 10, 21)
    assert plan.join_days == {("g1", dated, date(2026, 11, 10)): 1, ("g1", dated, dated): 1}


# -- anomaly rules -------------------------------------------------------------------------


def test_message_rate_flags_a_bot_not_a_fast_typist() -> None:
    flag = message_rate(UserDayInputs(peak_minute_messages=240), T)
    assert flag is not None and flag.values["messages_per_minute"] == 240
    assert message_rate(UserDayInputs(peak_minute_messages=25), T) is None


def test_points_spike_flags_a_farmer_not_a_steady_earner() -> None:
    farmer = UserDayInputs(points_delta=100_000, points_history=300, history_days=28)
    flag = points_spike(farmer, T)
    assert flag is not None and flag.name == "points_spike" and "100000" in flag.reason
    assert points_spike(UserDayInputs(points_delta=200, points_history=900), T) is None


def test_points_spike_scales_with_the_users_own_history() -> None:
    big_earner = UserDayInputs(points_delta=5_000, points_history=28 * 4_000, history_days=28)
    assert points_spike(big_earner, T) is None
    assert points_spike(UserDayInputs(points_delta=5_000, points_history=0), T) is not None


def test_lockstep_flags_many_identical_accounts_from_one_source_only() -> None:
    ring = UserDayInputs(lockstep_source="relay-1", lockstep_accounts=8, lockstep_events=40)
    flag = lockstep(ring, T)
    assert flag is not None and flag.values["accounts"] == 8
    pair = UserDayInputs(lockstep_source="relay-1", lockstep_accounts=2, lockstep_events=40)
    assert lockstep(pair, T) is None
    quiet = UserDayInputs(lockstep_source="relay-1", lockstep_accounts=30, lockstep_events=1)
    assert lockstep(quiet, T) is None  # one login each at midnight is not a fingerprint


def test_late_joins_flags_a_group_filled_on_the_28th_not_a_growing_one() -> None:
    filled = GroupMonthInputs(joins=31, late_joins=30, late_days=4)
    flag = late_joins(filled, T)
    assert flag is not None and flag.values["share"] == round(30 / 31, 3)
    growing = GroupMonthInputs(joins=60, late_joins=8, late_days=4)
    assert late_joins(growing, T) is None
    small = GroupMonthInputs(joins=3, late_joins=3, late_days=4)
    assert late_joins(small, T) is None


def test_dominant_member_flags_one_member_carrying_a_prize_group() -> None:
    carried = GroupMonthInputs(
        members=12, vitality=50_000, top_member_id="u9", top_member_contribution=48_000
    )
    flag = dominant_member(carried, T)
    assert flag is not None and flag.values["member_id"] == "u9"
    shared = GroupMonthInputs(
        members=12, vitality=6_000, top_member_id="u1", top_member_contribution=900
    )
    assert dominant_member(shared, T) is None
    tiny = GroupMonthInputs(
        members=4, vitality=300, top_member_id="u1", top_member_contribution=250
    )
    assert dominant_member(tiny, T) is None  # below the floor no prize is at stake


def test_quiet_records_carry_no_flags() -> None:
    assert user_day_flags(UserDayInputs(), T) == []
    assert group_month_flags(GroupMonthInputs(), T) == []


def test_thresholds_come_from_settings() -> None:
    from services.scoring.settings import ScoringSettings

    settings = ScoringSettings(flag_message_rate_per_minute=30)
    assert settings.anomaly_thresholds().message_rate_per_minute == 30
    assert message_rate(UserDayInputs(peak_minute_messages=30), settings.anomaly_thresholds())
