"""SPEC §4 rule by rule, on the pure scoring domain (no broker, no database)."""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from services.scoring.domain.batch import plan_batch
from services.scoring.domain.membership import MembershipEvent, is_member, spans_of
from services.scoring.domain.periods import end_of_month, local_day, months_between, parse_month
from services.scoring.domain.points import day_points, message_points, online_points
from services.scoring.domain.sessions import OnlineTime, SessionState, online_time_by_day
from services.scoring.domain.vitality import Weights, vitality
from shared.contract import Envelope, validate_event
from tests.builders import make_event

TZ = ZoneInfo("Asia/Shanghai")


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def session(login: str, logout: str | None, client: str = "pc") -> SessionState:
    s = SessionState().with_login(local(login), client, "e1")
    return s.with_logout(local(logout)) if logout else s


def envelope(**kw: Any) -> Envelope:
    event = validate_event(make_event(**kw), None)
    assert not hasattr(event, "code"), event
    return Envelope(event=event, received_at=datetime.now(UTC), source="k")


# --- sessions -------------------------------------------------------------------------------


def test_session_across_local_midnight_is_split_between_the_two_days() -> None:
    by_day = online_time_by_day(session("2026-11-01T23:30:00", "2026-11-02T00:45:00"), TZ)
    assert by_day == {
        date(2026, 11, 1): OnlineTime(pc=1800),
        date(2026, 11, 2): OnlineTime(pc=2700),
    }


def test_session_length_is_capped_at_24_hours_from_its_start() -> None:
    by_day = online_time_by_day(session("2026-11-01T10:00:00", "2026-11-03T10:00:00", "mobile"), TZ)
    assert sum(t.mobile for t in by_day.values()) == 24 * 3600
    assert by_day[date(2026, 11, 2)] == OnlineTime(mobile=10 * 3600)


def test_logout_before_login_counts_nothing() -> None:
    assert online_time_by_day(session("2026-11-01T10:00:00", "2026-11-01T09:00:00"), TZ) == {}


def test_session_counts_only_once_both_ends_have_arrived() -> None:
    assert online_time_by_day(session("2026-11-01T10:00:00", None), TZ) == {}
    assert online_time_by_day(SessionState().with_logout(local("2026-11-01T10:00:00")), TZ) == {}


def test_sms_sessions_carry_no_online_time() -> None:
    assert (
        online_time_by_day(session("2026-11-01T10:00:00", "2026-11-01T11:00:00", "sms"), TZ) == {}
    )


def test_earliest_login_sets_start_and_client_whatever_the_arrival_order() -> None:
    late, early = (
        (local("2026-11-01T10:30:00"), "mobile", "b"),
        (local("2026-11-01T10:00:00"), "pc", "a"),
    )
    one = SessionState().with_login(*late).with_login(*early)
    other = SessionState().with_login(*early).with_login(*late)
    assert one == other and (one.start_at, one.start_client) == (early[0], "pc")


def test_logins_at_the_same_instant_are_broken_by_event_id() -> None:
    at = local("2026-11-01T10:00:00")
    s = SessionState().with_login(at, "mobile", "b").with_login(at, "pc", "a")
    assert s.start_client == "pc"


def test_latest_logout_ends_the_session() -> None:
    s = session("2026-11-01T10:00:00", "2026-11-01T11:00:00").with_logout(
        local("2026-11-01T10:30:00")
    )
    assert s.end_at == local("2026-11-01T11:00:00")


def test_split_session_days_sum_to_its_whole_seconds_not_each_parts() -> None:
    """SPEC §9: 1.5 s before midnight and 1.5 s after is 3 s, not 1 + 1."""
    by_day = online_time_by_day(session("2026-11-01T23:59:58.500", "2026-11-02T00:00:01.500"), TZ)
    assert by_day == {date(2026, 11, 1): OnlineTime(pc=1), date(2026, 11, 2): OnlineTime(pc=2)}


def test_a_capped_session_split_at_a_fraction_keeps_exactly_24_hours() -> None:
    by_day = online_time_by_day(
        session("2026-11-01T23:00:00.750", "2026-11-04T00:00:00", "mobile"), TZ
    )
    assert sum(t.mobile for t in by_day.values()) == 24 * 3600
    # 3,599.25 s, then 82,800.75 s: the parts floored one by one would lose a second
    assert by_day == {
        date(2026, 11, 1): OnlineTime(mobile=3599),
        date(2026, 11, 2): OnlineTime(mobile=82801),
    }


def test_each_part_rounds_down_only_where_the_total_does() -> None:
    by_day = online_time_by_day(session("2026-11-01T23:59:59.900", "2026-11-02T00:00:00.050"), TZ)
    assert sum(t.pc for t in by_day.values()) == 0  # 0.15 s in all


# --- daily points ---------------------------------------------------------------------------


def test_online_points_are_15_minutes_on_pc_or_5_on_mobile_each_capped_at_4() -> None:
    assert online_points(899, 0) == 0 and online_points(900, 0) == 1 and online_points(0, 600) == 2
    assert online_points(3600, 0) == 4 and online_points(0, 20 * 60) == 4
    assert online_points(36_000, 36_000) == 4
    assert online_points(900, 300) == 2  # a point from each client adds up


def test_message_points_are_capped_at_20_a_day() -> None:
    assert message_points(7) == 7 and message_points(20) == 20 and message_points(500) == 20


def test_activity_points_add_online_and_message_points() -> None:
    assert (
        day_points(messages=25, online_seconds_pc=1800, online_seconds_mobile=0).activity_points
        == 22
    )


# --- batches --------------------------------------------------------------------------------


def test_sms_messages_are_counted_apart_and_never_make_a_user_active() -> None:
    plan = plan_batch([envelope(type="message", client="sms", group_id="g1")], TZ)
    (counters,) = plan.user_day.values()
    assert counters.messages == 0 and counters.messages_sms == 1
    assert not plan.group_month  # SMS messages are not group_messages either


def test_group_messages_count_pc_and_mobile_messages_carrying_the_group() -> None:
    at = datetime(2026, 11, 5, 4, tzinfo=UTC)
    plan = plan_batch(
        [
            envelope(type="message", client="pc", group_id="g1", at=at),
            envelope(type="message", client="mobile", group_id="g1", at=at),
            envelope(type="message", client="mobile", group_id=..., at=at),
        ],
        TZ,
    )
    assert plan.group_month[("g1", date(2026, 11, 1))].group_messages == 2


def test_events_land_in_their_local_day_and_month_not_the_utc_one() -> None:
    at = datetime(2026, 10, 31, 16, 30, tzinfo=UTC)  # 00:30 on 1 November in Shanghai
    plan = plan_batch([envelope(type="points", delta=5, at=at)], TZ)
    assert list(plan.user_day) == [("u1", date(2026, 11, 1))]


def test_late_event_lands_in_its_own_past_month() -> None:
    at = datetime(2026, 9, 30, 3, tzinfo=UTC)
    plan = plan_batch([envelope(type="bonus_card", group_id="g9", points=7, at=at)], TZ)
    assert plan.group_month[("g9", date(2026, 9, 1))].bonus_points == 7


def test_group_created_is_the_owners_join() -> None:
    plan = plan_batch([envelope(type="group_created", user_id="owner", group_id="g1")], TZ)
    (fact,) = plan.membership
    assert (fact.user_id, fact.group_id, fact.joined) == ("owner", "g1", True)


def test_earliest_dissolution_is_kept() -> None:
    a = datetime(2026, 11, 5, tzinfo=UTC)
    plan = plan_batch(
        [
            envelope(type="group_dissolved", group_id="g1", at=a + timedelta(days=1)),
            envelope(type="group_dissolved", group_id="g1", at=a),
        ],
        TZ,
    )
    assert plan.dissolved == {"g1": a}


def test_every_actor_is_seen_from_the_local_day_of_their_earliest_event_in_the_batch() -> None:
    early = datetime(2026, 10, 31, 16, 30, tzinfo=UTC)  # 1 November in Shanghai
    plan = plan_batch(
        [
            envelope(type="message", user_id="a", at=early + timedelta(days=3)),
            envelope(type="logout", user_id="a", at=early),  # no counter, still an event of a's
            envelope(type="bonus_card", user_id="b", group_id="g2", at=early),
        ],
        TZ,
    )
    assert plan.first_seen == {"a": date(2026, 11, 1), "b": date(2026, 11, 1)}


def test_every_group_an_event_names_is_seen() -> None:
    plan = plan_batch(
        [
            envelope(type="message", group_id="chat"),
            envelope(type="message", group_id=...),  # one-to-one: no group
            envelope(type="group_join", group_id="joined"),
            envelope(type="bonus_card", group_id="carded"),
            envelope(type="group_dissolved", group_id="gone"),
        ],
        TZ,
    )
    assert plan.groups_seen == {"chat", "joined", "carded", "gone"}


# --- membership -----------------------------------------------------------------------------


def ev(at: str, event_id: str, joined: bool) -> MembershipEvent:
    return MembershipEvent(local(at), event_id, joined)


def test_membership_flip_flops_give_the_same_spans_in_any_order() -> None:
    events = [
        ev("2026-10-01T10:00:00", "a", True),
        ev("2026-10-10T10:00:00", "b", False),
        ev("2026-10-20T10:00:00", "c", True),
        ev("2026-11-02T10:00:00", "d", False),
    ]
    assert spans_of(events) == spans_of(reversed(events)) == spans_of(events[2:] + events[:2])
    spans = spans_of(events)
    assert is_member(spans, end_of_month(date(2026, 10, 1), TZ))
    assert not is_member(spans, end_of_month(date(2026, 11, 1), TZ))


def test_membership_is_decided_by_events_strictly_before_the_instant() -> None:
    t = end_of_month(date(2026, 10, 1), TZ)
    joined_exactly_at_t = spans_of([MembershipEvent(t, "a", True)])
    assert not is_member(joined_exactly_at_t, t)
    left_exactly_at_t = spans_of(
        [ev("2026-10-01T00:00:00", "a", True), MembershipEvent(t, "b", False)]
    )
    assert is_member(left_exactly_at_t, t)


def test_same_instant_join_and_leave_are_ordered_by_event_id() -> None:
    at = "2026-10-05T10:00:00"
    spans = spans_of([ev(at, "b", True), ev(at, "a", False)])  # leave (a) then join (b)
    assert is_member(spans, end_of_month(date(2026, 10, 1), TZ))
    spans = spans_of([ev(at, "a", True), ev(at, "b", False)])  # join (a) then leave (b)
    assert not is_member(spans, end_of_month(date(2026, 10, 1), TZ))


def test_a_leave_without_a_join_is_no_membership() -> None:
    assert spans_of([ev("2026-10-05T10:00:00", "a", False)]) == []


# --- vitality, ordering, periods ------------------------------------------------------------


def test_vitality_is_the_weighted_sum_of_growth_activity_and_bonus() -> None:
    assert vitality(10, 20, 30, Weights()) == 60
    assert vitality(10, 20, 30, Weights(growth=2, activity=0.5, bonus=0)) == 30


def test_periods_are_local_months() -> None:
    assert local_day(datetime(2026, 11, 30, 16, 0, tzinfo=UTC), TZ) == date(2026, 12, 1)
    assert end_of_month(date(2026, 12, 1), TZ) == datetime(2027, 1, 1, tzinfo=TZ)
    assert months_between(date(2026, 11, 15), date(2027, 2, 3)) == [
        date(2026, 11, 1),
        date(2026, 12, 1),
        date(2027, 1, 1),
        date(2027, 2, 1),
    ]
    assert parse_month("2026-02") == date(2026, 2, 1)


def test_the_domain_imports_no_web_database_or_broker_library() -> None:
    """Pure rules (STYLE.md): FastAPI, SQLAlchemy and aiokafka stay at the edges."""
    domain = Path(__file__).parents[2] / "services" / "scoring" / "domain"
    imported: set[str] = set()
    for module in domain.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert not imported & {"fastapi", "starlette", "sqlalchemy", "asyncpg", "aiokafka"}
