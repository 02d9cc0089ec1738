"""What a batch changes, SPEC §4, on the pure scoring domain: sessions' online time by day,
month-end membership flips, and the group-month deltas of members joining, leaving and
changing activity (no broker, no database)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from services.scoring.domain.batch import SESSION_COUNTERS, UserDayDelta, add_online_time
from services.scoring.domain.contributions import (
    GroupMonthDelta,
    MemberMonth,
    contribution,
    group_month_deltas,
)
from services.scoring.domain.membership import (
    MembershipEvent,
    MembershipFact,
    MembershipFlip,
    Span,
    membership_flips,
    pairs_of,
    spans_of,
)
from services.scoring.domain.points import day_points, is_active
from services.scoring.domain.sessions import (
    OnlineTime,
    SessionFact,
    SessionState,
    online_time_change,
    update_sessions,
)
from shared.metric_fields import GROUP_MONTH_COUNTERS, USER_DAY_COUNTERS

TZ = ZoneInfo("Asia/Shanghai")
OCT, NOV, DEC = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)
NOW = datetime(2026, 11, 20, 4, tzinfo=UTC)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def login(at: str, client: str = "pc", session_id: str = "s1") -> SessionFact:
    return SessionFact("u1", session_id, "login", local(at), client, event_id=at)


def logout(at: str, session_id: str = "s1") -> SessionFact:
    return SessionFact("u1", session_id, "logout", local(at), "pc", event_id=at)


def fact(at: str, joined: bool, user: str = "u1", group: str = "g1") -> MembershipFact:
    return MembershipFact(group, user, local(at), f"{at}-{joined}", joined)


def member_month(messages: int = 0, activity: int = 0, delta: int = 0) -> MemberMonth:
    return MemberMonth(messages=messages, activity_points=activity, points_delta=delta)


# --- activity and daily points --------------------------------------------------------------


def test_one_message_makes_a_day_or_month_active_and_none_does_not() -> None:
    assert is_active(1) and is_active(40)
    assert not is_active(0)


def test_day_points_cap_online_and_message_points_separately() -> None:
    points = day_points(messages=35, online_seconds_pc=2 * 3600, online_seconds_mobile=0)
    assert (points.online_points, points.message_points, points.activity_points) == (4, 20, 24)
    assert day_points(0, 0, 0).activity_points == 0


# --- sessions: online time by day -----------------------------------------------------------


def test_a_logout_arriving_after_its_login_adds_the_sessions_time() -> None:
    first = update_sessions({}, [login("2026-11-01T10:00:00")], TZ)
    assert first.online_time == {}  # one end only: nothing yet
    second = update_sessions(first.states, [logout("2026-11-01T10:30:00")], TZ)
    assert second.online_time == {("u1", date(2026, 11, 1)): OnlineTime(pc=1800)}


def test_a_later_logout_extends_the_session_by_the_difference_only() -> None:
    stored = {("u1", "s1"): update_sessions(
        {}, [login("2026-11-01T10:00:00"), logout("2026-11-01T10:30:00")], TZ
    ).states[("u1", "s1")]}  # fmt: skip
    update = update_sessions(stored, [logout("2026-11-01T11:00:00")], TZ)
    assert update.online_time == {("u1", date(2026, 11, 1)): OnlineTime(pc=1800)}


def test_an_earlier_login_arriving_late_moves_time_into_the_previous_day() -> None:
    before = SessionState().with_login(local("2026-11-02T00:10:00"), "mobile", "b")
    before = before.with_logout(local("2026-11-02T00:40:00"))
    after = before.with_login(local("2026-11-01T23:50:00"), "mobile", "a")
    assert online_time_change(before, after, TZ) == {
        date(2026, 11, 1): OnlineTime(mobile=600),
        date(2026, 11, 2): OnlineTime(mobile=600),
    }


def test_a_late_login_from_sms_takes_the_sessions_time_back() -> None:
    before = SessionState().with_login(local("2026-11-01T10:00:00"), "pc", "b")
    before = before.with_logout(local("2026-11-01T11:00:00"))
    after = before.with_login(local("2026-11-01T09:00:00"), "sms", "a")
    assert online_time_change(before, after, TZ) == {date(2026, 11, 1): OnlineTime(pc=-3600)}


def test_a_fact_that_changes_nothing_changes_no_day() -> None:
    state = SessionState().with_login(local("2026-11-01T10:00:00"), "pc", "a")
    state = state.with_logout(local("2026-11-01T11:00:00"))
    update = update_sessions({("u1", "s1"): state}, [logout("2026-11-01T10:30:00")], TZ)
    assert update.online_time == {} and update.states == {("u1", "s1"): state}


def test_two_sessions_of_a_user_on_one_day_add_up() -> None:
    update = update_sessions(
        {},
        [
            login("2026-11-01T10:00:00", session_id="a"),
            logout("2026-11-01T10:15:00", session_id="a"),
            login("2026-11-01T12:00:00", "mobile", session_id="b"),
            logout("2026-11-01T12:05:00", session_id="b"),
        ],
        TZ,
    )
    assert update.online_time == {("u1", date(2026, 11, 1)): OnlineTime(pc=900, mobile=300)}
    assert list(update.states) == [("u1", "a"), ("u1", "b")]


def test_online_time_joins_the_days_other_counters() -> None:
    days = {("u1", date(2026, 11, 1)): UserDayDelta(messages=2)}
    add_online_time(
        days,
        {
            ("u1", date(2026, 11, 1)): OnlineTime(pc=60),
            ("u1", date(2026, 11, 2)): OnlineTime(mobile=-30),
        },
    )
    assert days == {
        ("u1", date(2026, 11, 1)): UserDayDelta(messages=2, online_seconds_pc=60),
        ("u1", date(2026, 11, 2)): UserDayDelta(online_seconds_mobile=-30),
    }


def test_increments_name_exactly_the_stored_counters() -> None:
    """The store writes them column by column (shared.metric_fields)."""
    assert [f.name for f in dataclasses.fields(UserDayDelta)] == [
        *USER_DAY_COUNTERS,
        *SESSION_COUNTERS,
    ]
    assert {f.name for f in dataclasses.fields(GroupMonthDelta)} == set(GROUP_MONTH_COUNTERS)


# --- membership flips at month ends ---------------------------------------------------------


def flips_of(facts: list[MembershipFact], *stored: MembershipFact) -> list[MembershipFlip]:
    """Flips of `facts` arriving after `stored` (one pair)."""

    def spans(of: list[MembershipFact]) -> list[Span]:
        return spans_of(MembershipEvent(f.at, f.event_id, f.joined) for f in of)

    (pair,) = pairs_of([*facts, *stored])
    before, after = spans(list(stored)), spans([*stored, *facts])
    return membership_flips(facts, {pair: before}, {pair: after}, NOW, TZ)


def test_a_join_counts_from_its_month_to_the_current_one() -> None:
    assert flips_of([fact("2026-10-05T10:00:00", True)]) == [
        MembershipFlip("g1", "u1", OCT, joined=True),
        MembershipFlip("g1", "u1", NOV, joined=True),
    ]


def test_a_leave_arriving_late_flips_the_months_after_it() -> None:
    joined = fact("2026-09-05T10:00:00", True)
    assert flips_of([fact("2026-10-05T10:00:00", False)], joined) == [
        MembershipFlip("g1", "u1", OCT, joined=False),
        MembershipFlip("g1", "u1", NOV, joined=False),
    ]


def test_a_join_and_leave_within_one_month_flip_nothing() -> None:
    assert flips_of([fact("2026-10-05T10:00:00", True), fact("2026-10-06T10:00:00", False)]) == []


def test_a_repeated_join_flips_nothing() -> None:
    assert flips_of([fact("2026-10-20T10:00:00", True)], fact("2026-10-05T10:00:00", True)) == []


def test_a_fact_dated_after_now_reaches_its_own_month() -> None:
    flips = flips_of([fact("2026-12-02T10:00:00", True)])
    assert flips == [MembershipFlip("g1", "u1", DEC, joined=True)]


# --- group-month deltas ---------------------------------------------------------------------


def test_a_member_counts_once_and_is_active_with_a_message() -> None:
    assert contribution(member_month(messages=3, activity=7, delta=-2)) == GroupMonthDelta(
        members=1, active_members=1, activity_points=7, points_growth=-2
    )
    assert contribution(MemberMonth()) == GroupMonthDelta(members=1)


def test_a_continuing_members_new_activity_adds_the_difference() -> None:
    deltas = group_month_deltas(
        groups_of={("u1", NOV): ["g1", "g2"]},
        before={("u1", NOV): member_month(activity=5)},
        after={("u1", NOV): member_month(messages=1, activity=8, delta=10)},
        flips=[],
        own={},
    )
    change = GroupMonthDelta(active_members=1, activity_points=3, points_growth=10)
    assert deltas == {("g1", NOV): change, ("g2", NOV): change}


def test_a_joining_member_adds_the_whole_month_at_its_new_values() -> None:
    deltas = group_month_deltas(
        groups_of={},  # not a member before the batch
        before={("u1", NOV): member_month(activity=5)},
        after={("u1", NOV): member_month(messages=2, activity=9)},
        flips=[MembershipFlip("g1", "u1", NOV, joined=True)],
        own={},
    )
    assert deltas == {("g1", NOV): GroupMonthDelta(members=1, active_members=1, activity_points=9)}


def test_a_leaving_member_takes_away_what_it_counted_before_the_batch() -> None:
    deltas = group_month_deltas(
        groups_of={("u1", NOV): ["g1"]},  # a member before the batch's leave
        before={("u1", NOV): member_month(messages=1, activity=4)},
        after={("u1", NOV): member_month(messages=2, activity=6)},
        flips=[MembershipFlip("g1", "u1", NOV, joined=False)],
        own={},
    )
    assert deltas == {
        ("g1", NOV): GroupMonthDelta(members=-1, active_members=-1, activity_points=-4)
    }


def test_a_member_without_activity_that_month_still_counts_as_a_member() -> None:
    deltas = group_month_deltas({}, {}, {}, [MembershipFlip("g1", "u1", OCT, True)], {})
    assert deltas == {("g1", OCT): GroupMonthDelta(members=1)}


def test_group_messages_and_bonus_points_add_to_the_members_changes() -> None:
    deltas = group_month_deltas(
        groups_of={("u1", NOV): ["g1"]},
        before={},
        after={("u1", NOV): member_month(messages=1, activity=1)},
        flips=[],
        own={("g1", NOV): GroupMonthDelta(group_messages=1, bonus_points=50)},
    )
    assert deltas == {
        ("g1", NOV): GroupMonthDelta(
            active_members=1, activity_points=1, group_messages=1, bonus_points=50
        )
    }


def test_an_unchanged_contribution_leaves_the_groups_untouched() -> None:
    same = member_month(messages=1, activity=3)
    deltas = group_month_deltas(
        {("u1", NOV): ["g1"]}, {("u1", NOV): same}, {("u1", NOV): same}, [], {}
    )
    assert deltas == {}
    assert not GroupMonthDelta()
