"""Folding a batch of new events into what must change (SPEC §4). Pure: the store performs it.

Counters that simply add up (messages, points, check-ins, ...) become per-(user, day) and
per-(group, month) increments, which commute, so arrival order cannot matter. Everything that
depends on order — sessions, membership, group attributes — is kept as facts (each login,
logout, join, leave) from which the store recomputes the state, so a late event lands exactly
where it belongs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.scoring.domain.periods import local_day, month_of
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

USER_DAY_COUNTERS = (
    "messages",
    "messages_sms",
    "messages_mobile",
    "points_delta",
    "friends_added",
    "checkins",
    "logins",
)


@dataclass(slots=True)
class SessionFact:
    user_id: str
    session_id: str
    kind: str  # "login" or "logout"
    at: datetime
    client: str
    event_id: str


@dataclass(frozen=True, slots=True)
class MembershipFact:
    group_id: str
    user_id: str
    at: datetime
    event_id: str
    joined: bool


@dataclass(frozen=True, slots=True)
class GroupCreated:
    group_id: str
    owner_id: str
    name: str
    province: str
    at: datetime
    event_id: str


@dataclass(slots=True)
class BatchPlan:
    user_day: dict[tuple[str, date], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(USER_DAY_COUNTERS, 0))
    )
    group_month: dict[tuple[str, date], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: {"group_messages": 0, "bonus_points": 0})
    )
    sessions: list[SessionFact] = field(default_factory=list)
    membership: list[MembershipFact] = field(default_factory=list)
    created: list[GroupCreated] = field(default_factory=list)
    dissolved: dict[str, datetime] = field(default_factory=dict)
    type_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def plan_batch(envelopes: list[Envelope], tz: ZoneInfo) -> BatchPlan:
    """What the batch changes; every event in `envelopes` is new (the ledger filtered repeats)."""
    plan = BatchPlan()
    for env in envelopes:
        e = env.event
        plan.type_counts[e.type] += 1
        day = local_day(e.occurred_at, tz)
        counters = plan.user_day[(e.user_id, day)] if _counts_for_user(e) else None
        match e:
            case MessageEvent():
                assert counters is not None
                if e.client == "sms":
                    counters["messages_sms"] += 1
                else:
                    counters["messages"] += 1
                    if e.client == "mobile":
                        counters["messages_mobile"] += 1
                    if e.group_id is not None:
                        plan.group_month[(e.group_id, month_of(day))]["group_messages"] += 1
            case LoginEvent():
                assert counters is not None
                counters["logins"] += 1
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
                counters["points_delta"] += e.delta
            case FriendAddedEvent():
                assert counters is not None
                counters["friends_added"] += 1
            case CheckinEvent():
                assert counters is not None
                counters["checkins"] += 1
            case BonusCardEvent():
                plan.group_month[(e.group_id, month_of(day))]["bonus_points"] += e.points
            case GroupCreatedEvent():
                plan.created.append(
                    GroupCreated(
                        e.group_id, e.user_id, e.name, e.province, e.occurred_at, e.event_id
                    )
                )
                plan.membership.append(
                    MembershipFact(e.group_id, e.user_id, e.occurred_at, e.event_id, joined=True)
                )
            case GroupJoinEvent() | GroupLeaveEvent():
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
