"""Folding a batch of new events into what must change (SPEC §4). Pure: the use case performs
it (usecases/apply_events.py).

Counters that simply add up (messages, points, check-ins, ...) become per-(user, day) and
per-(group, month) increments, which commute, so arrival order cannot matter. Everything that
depends on order — sessions, membership, group attributes — is kept as facts (each login,
logout, join, leave) from which the state is folded again with what is stored (sessions.py,
membership.py), so a late event lands exactly where it belongs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.scoring.domain.contributions import GroupMonthDelta, GroupMonthKey
from services.scoring.domain.friends import FirstAdd, Pair, pair_of
from services.scoring.domain.membership import MembershipFact
from services.scoring.domain.periods import local_day, month_of
from services.scoring.domain.sessions import OnlineTime, SessionFact, UserDayKey
from shared.contract import (
    BonusCardEvent,
    CheckinEvent,
    Envelope,
    FriendAddedEvent,
    GroupCreatedEvent,
    GroupDissolvedEvent,
    GroupJoinEvent,
    GroupLeaveEvent,
    LoginEvent,
    LogoutEvent,
    MessageEvent,
    PointsEvent,
)


@dataclass(slots=True)
class UserDayDelta:
    """An increment to one user day's stored counters (shared.metric_fields.USER_DAY_COUNTERS)."""

    messages: int = 0
    messages_sms: int = 0
    messages_mobile: int = 0
    online_seconds_pc: int = 0
    online_seconds_mobile: int = 0
    points_delta: int = 0
    friends_added: int = 0  # never incremented: counted from first adds (domain.friends)
    checkins: int = 0
    logins: int = 0
    # Counted sessions by the day of their start and their client: not published (not in
    # USER_DAY_COUNTERS), read by the business KPIs (domain.kpis).
    sessions_pc: int = 0
    sessions_mobile: int = 0
    sessions_sms: int = 0


SESSION_COUNTERS = ("sessions_pc", "sessions_mobile", "sessions_sms")


@dataclass(frozen=True, slots=True)
class GroupCreated:
    group_id: str
    owner_id: str
    name: str
    province: str
    at: datetime
    event_id: str


@dataclass(slots=True)
class SourceDay:
    """A user's events of one local day from one source: how many, and the sum of their
    minutes since the epoch — a fingerprint that adds up, so it is exact in any order
    (domain.anomalies.lockstep)."""

    events: int = 0
    minute_sum: int = 0


SourceDayKey = tuple[str, date, str]  # (user_id, day, source)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_minute(at: datetime) -> int:
    """Whole minutes since the epoch (the clock minute an event happened in)."""
    return (at - _EPOCH) // timedelta(minutes=1)


@dataclass(slots=True)
class BatchPlan:
    user_day: dict[UserDayKey, UserDayDelta] = field(
        default_factory=lambda: defaultdict(UserDayDelta)
    )
    group_month: dict[GroupMonthKey, GroupMonthDelta] = field(
        default_factory=lambda: defaultdict(GroupMonthDelta)
    )
    sessions: list[SessionFact] = field(default_factory=list)
    membership: list[MembershipFact] = field(default_factory=list)
    created: list[GroupCreated] = field(default_factory=list)
    dissolved: dict[str, datetime] = field(default_factory=dict)
    # Every actor's earliest local day in the batch, and every group an event names: scoring
    # has "seen" them (SPEC §9: an entity never seen is a 404; §10: `first_seen`).
    first_seen: dict[str, date] = field(default_factory=dict)
    groups_seen: set[str] = field(default_factory=set)
    # What the anomaly flags read (domain.anomalies), kept as increments like the counters:
    # messages per (user, clock minute), each user's day per source, joins per (group, day).
    minute_messages: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    source_days: dict[SourceDayKey, SourceDay] = field(
        default_factory=lambda: defaultdict(SourceDay)
    )
    # (group, local day the join is dated, local day it was heard): a client's join is heard
    # when ingest received it (a join backdated into a closed month is heard late), a
    # server's or an import's on the day it is dated (history is loaded after the fact).
    join_days: dict[tuple[str, date, date], int] = field(default_factory=lambda: defaultdict(int))
    # Every friend_added as (pair, add): friendships count once (domain.friends, SPEC §9).
    friend_adds: list[tuple[Pair, FirstAdd]] = field(default_factory=list)
    # pc/mobile messages per (user, local month, group): a user's province (domain.kpis).
    group_messages: dict[tuple[str, date, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )


CLIENT_AUTHORITIES = ("user", "relay")


def heard_day(env: Envelope, day: date, tz: ZoneInfo) -> date:
    """The local day an event was heard: when ingest received a client's event (never before
    the day it is dated), the dated day for a server's word or an import (SPEC §14: joins
    bunched before the month's end include joins backdated into it)."""
    if env.authority in CLIENT_AUTHORITIES:
        return max(day, local_day(env.received_at, tz))
    return day


def plan_batch(envelopes: list[Envelope], tz: ZoneInfo) -> BatchPlan:
    """What the batch changes; every event in `envelopes` is new (the ledger filtered repeats)."""
    plan = BatchPlan()
    for env in envelopes:
        e = env.event
        day = local_day(e.occurred_at, tz)
        counters = plan.user_day[(e.user_id, day)] if _counts_for_user(e) else None
        seen = plan.first_seen.get(e.user_id)
        if seen is None or day < seen:
            plan.first_seen[e.user_id] = day
        group_id: str | None = getattr(e, "group_id", None)
        if group_id is not None:
            plan.groups_seen.add(group_id)
        minute = epoch_minute(e.occurred_at)
        fingerprint = plan.source_days[(e.user_id, day, env.source)]
        fingerprint.events += 1
        fingerprint.minute_sum += minute
        match e:
            case MessageEvent():
                assert counters is not None
                plan.minute_messages[(e.user_id, minute)] += 1
                if e.client == "sms":
                    counters.messages_sms += 1
                else:
                    counters.messages += 1
                    if e.client == "mobile":
                        counters.messages_mobile += 1
                    if e.group_id is not None:
                        plan.group_month[(e.group_id, month_of(day))].group_messages += 1
                        plan.group_messages[(e.user_id, month_of(day), e.group_id)] += 1
            case LoginEvent():
                assert counters is not None
                counters.logins += 1
                plan.sessions.append(
                    SessionFact(
                        e.user_id, e.session_id, "login", e.occurred_at, e.client, e.event_id
                    )
                )
            case LogoutEvent():
                plan.sessions.append(
                    SessionFact(
                        e.user_id, e.session_id, "logout", e.occurred_at, e.client, e.event_id
                    )
                )
            case PointsEvent():
                assert counters is not None
                counters.points_delta += e.delta
            case FriendAddedEvent():
                # Counted from the pair's first add, not per event (domain/friends.py).
                plan.friend_adds.append(
                    (
                        pair_of(e.user_id, e.friend_user_id),
                        FirstAdd(e.occurred_at, e.event_id, e.user_id, day),
                    )
                )
            case CheckinEvent():
                assert counters is not None
                counters.checkins += 1
            case BonusCardEvent():
                plan.group_month[(e.group_id, month_of(day))].bonus_points += e.points
            case GroupCreatedEvent():
                plan.created.append(
                    GroupCreated(
                        e.group_id, e.user_id, e.name, e.province, e.occurred_at, e.event_id
                    )
                )
                plan.membership.append(
                    MembershipFact(e.group_id, e.user_id, e.occurred_at, e.event_id, joined=True)
                )
                plan.join_days[(e.group_id, day, heard_day(env, day, tz))] += 1
            case GroupJoinEvent() | GroupLeaveEvent():
                if e.type == "group_join":
                    plan.join_days[(e.group_id, day, heard_day(env, day, tz))] += 1
                plan.membership.append(
                    MembershipFact(
                        e.group_id,
                        e.user_id,
                        e.occurred_at,
                        e.event_id,
                        joined=e.type == "group_join",
                    )
                )
            case GroupDissolvedEvent():
                prior = plan.dissolved.get(e.group_id)
                plan.dissolved[e.group_id] = min(prior, e.occurred_at) if prior else e.occurred_at
    return plan


def _counts_for_user(e: object) -> bool:
    return isinstance(e, MessageEvent | LoginEvent | PointsEvent | FriendAddedEvent | CheckinEvent)


def add_online_time(
    user_days: dict[UserDayKey, UserDayDelta], online_time: Mapping[UserDayKey, OnlineTime]
) -> None:
    """Fold sessions' changes of online time into the batch's user-day increments."""
    for key, change in online_time.items():
        counters = user_days.get(key)
        if counters is None:
            counters = user_days[key] = UserDayDelta()
        counters.online_seconds_pc += change.pc
        counters.online_seconds_mobile += change.mobile


def add_session_counts(
    user_days: dict[UserDayKey, UserDayDelta], counted: Mapping[UserDayKey, Mapping[str, int]]
) -> None:
    """Fold sessions' changes of counted sessions into the batch's user-day increments."""
    for key, clients in counted.items():
        counters = user_days.get(key)
        if counters is None:
            counters = user_days[key] = UserDayDelta()
        counters.sessions_pc += clients.get("pc", 0)
        counters.sessions_mobile += clients.get("mobile", 0)
        counters.sessions_sms += clients.get("sms", 0)
