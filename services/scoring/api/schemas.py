"""Response and request bodies of the scoring API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.pagination import Page
from shared.records import AnomalyFlag

FLAGS = (
    "anomaly flags (SPEC §14): each with its rule, a reason in words and the values that "
    "tripped it — glossary: docs/metrics.md#anomaly-flags"
)

FIRST_SEEN = "local day of the user's earliest event scoring applied (SPEC §10)"
GLOSSARY = (
    "docs/metrics.md"  # every metric and score, defined in words for the people who read them
)


def term(meaning: str, section: str) -> str:
    """A field's description: what it means, and where the glossary says more."""
    return f"{meaning} — glossary: {GLOSSARY}#{section}"


DAY, MONTH, GROUP = "a-users-day", "a-users-month", "a-groups-month"


class _UserMetrics(BaseModel):
    user_id: str
    first_seen: date = Field(description=FIRST_SEEN)
    messages: int = Field(description=term("chat messages from the PC or mobile client", DAY))
    messages_sms: int = Field(description=term("messages through the SMS bridge", DAY))
    online_seconds_pc: int = Field(description=term("seconds online on PC", DAY))
    online_seconds_mobile: int = Field(description=term("seconds online on mobile", DAY))
    online_points: int = Field(
        description=term("1 per 15 min on PC + 1 per 5 min on mobile, at most 4 a day", DAY)
    )
    message_points: int = Field(description=term("1 per message, at most 20 a day", DAY))
    activity_points: int = Field(description=term("online_points + message_points", DAY))
    points_delta: int = Field(description=term("points awarded or deducted by the platform", DAY))
    friends_added: int = Field(description=term("friends added", DAY))
    checkins: int = Field(description=term("check-ins", DAY))
    logins: int = Field(description=term("logins", DAY))


class UserDay(_UserMetrics):
    day: str
    messages_mobile: int = Field(description="messages sent from the mobile client")
    flags: list[AnomalyFlag] = Field(default_factory=list, description=FLAGS)


class UserMonth(_UserMetrics):
    month: str
    active_days: int = Field(description=term("days with a PC or mobile message", MONTH))
    active: bool = Field(
        description=term("messages ≥ 1 this month; SMS-only users are never active", MONTH)
    )
    lifecycle: Literal["new", "returning", "resurrecting", "dormant"] | None = Field(
        description=term(
            "new (first seen this month), returning (active this month and last), resurrecting "
            "(active this month, not last, seen before), dormant (active last month, not this); "
            "null: none of these",
            "lifecycle",
        )
    )
    loyal: bool = Field(description=term("active this month and the two before it", "lifecycle"))


class TimelineDay(BaseModel):
    """What the events scoring applied added up to on one local day of the user."""

    day: date = Field(description="The local day (deployment time zone)")
    messages: int = Field(description="pc and mobile messages")
    messages_sms: int = Field(description="messages through the SMS bridge")
    messages_mobile: int = Field(description="of `messages`, those from the mobile client")
    online_seconds_pc: int = Field(description="seconds online on PC (sessions split by day)")
    online_seconds_mobile: int = Field(description="seconds online on mobile")
    online_points: int = Field(description="min(4, pc seconds / 900 + mobile seconds / 300)")
    message_points: int = Field(description="min(messages, 20)")
    activity_points: int = Field(description="online_points + message_points")
    points_delta: int = Field(description="sum of `points` events' deltas")
    friends_added: int
    checkins: int
    logins: int
    month_active: bool = Field(description="the day's month is active (≥ 1 pc/mobile message)")


class Timeline(Page[TimelineDay]):
    user_id: str
    first_seen: date = Field(description=FIRST_SEEN)
    from_day: date = Field(serialization_alias="from", description="first day of the range")
    to_day: date = Field(serialization_alias="to", description="last day of the range")


class WeightsBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")  # `true`, "1" are not weights
    w_growth: float = Field(ge=-1000, le=1000, allow_inf_nan=False)
    w_activity: float = Field(ge=-1000, le=1000, allow_inf_nan=False)
    w_bonus: float = Field(ge=-1000, le=1000, allow_inf_nan=False)


class ProfileChange(WeightsBody):
    """A change of the live profile waiting for a second principal (issue 18)."""

    proposed_by: str
    proposed_at: datetime


class Profile(WeightsBody):
    name: str
    updated_at: datetime
    updated_by: str
    pending: ProfileChange | None = Field(
        default=None,
        description="A change of `default` proposed and not yet approved: `POST "
        "/v1/profiles/default:approve` by an approver who did not propose it applies it.",
    )


class Member(BaseModel):
    user_id: str
    activity_points: int
    points_delta: int
    messages: int
    contribution: float = Field(description=term("what the member adds to vitality", GROUP))


class GroupMonth(BaseModel):
    group_id: str
    month: str
    name: str | None
    province: str | None
    owner_id: str | None
    dissolved: bool
    members: int = Field(description=term("members at the month's end", GROUP))
    active_members: int = Field(description=term("members active in the month", GROUP))
    activity_points: int = Field(description=term("members' activity points, summed", GROUP))
    points_growth: int = Field(description=term("members' points delta, summed", GROUP))
    bonus_points: int = Field(description=term("bonus cards played for the group", GROUP))
    group_messages: int = Field(description=term("PC/mobile messages in the group", GROUP))
    vitality: float = Field(
        description=term(
            "w_growth·points_growth + w_activity·activity_points + w_bonus·bonus_points", GROUP
        )
    )
    weights: WeightsBody
    profile: str
    rank: int | None = Field(
        description="Rank within the province's leaderboard; null if the "
        "group is not eligible (no group_created, or dissolved)"
    )
    top_members: list[Member]
    flags: list[AnomalyFlag] = Field(default_factory=list, description=FLAGS)


class LeaderboardEntry(BaseModel):
    rank: int
    group_id: str
    name: str | None
    owner_id: str | None
    members: int
    active_members: int
    activity_points: int
    points_growth: int
    bonus_points: int
    group_messages: int
    vitality: float
    flags: list[AnomalyFlag] = Field(default_factory=list, description=FLAGS)


class Leaderboard(Page[LeaderboardEntry]):
    month: str
    province: str
    weights: WeightsBody


class MemberPage(Page[str]):
    group_id: str
    month: str
    items: list[str] = Field(description="Member user ids as of the month's end (now, if current)")


class ActiveUser(BaseModel):
    user_id: str
    activity_points: int


class ActiveUserPage(Page[ActiveUser]):
    month: str


STATS = "business-kpis"


class _StatsItem(BaseModel):
    province: str | None = Field(description="the province of this item (null: all of them)")
    client: str | None = Field(description="all, pc, mobile or sms (null: not broken down)")
    active_users: int = Field(description=term("users with ≥ 1 pc/mobile message", STATS))
    new_users: int | None = Field(description=term("users first seen in the period", STATS))
    messages: int = Field(description=term("messages (pc + mobile + sms)", STATS))
    online_hours: float = Field(description=term("hours online (sessions' time)", STATS))
    sessions: int = Field(description=term("sessions counted, by the day they began", STATS))
    checkins: int | None = Field(description=term("check-ins", STATS))


class DayStatsItem(_StatsItem):
    dau_mau: float | None = Field(
        description=term("this day's active users / its month's active users", STATS)
    )


class MonthStatsItem(_StatsItem):
    returning_users: int | None = Field(description=term("lifecycle: returning", "lifecycle"))
    resurrecting_users: int | None = Field(description=term("lifecycle: resurrecting", "lifecycle"))
    dormant_users: int | None = Field(description=term("lifecycle: dormant", "lifecycle"))
    loyal_users: int | None = Field(description=term("active ≥ 3 months in a row", "lifecycle"))
    mau: int = Field(description=term("monthly active users (= active_users)", STATS))
    dau_mean: float = Field(description=term("mean daily active users over days_counted", STATS))
    dau_mau: float | None = Field(description=term("dau_mean / mau (stickiness)", STATS))


class DayStats(BaseModel):
    day: str
    by: list[str]
    items: list[DayStatsItem]


class MonthStats(BaseModel):
    month: str
    by: list[str]
    days_counted: int = Field(
        description="days the mean DAU is taken over: the month's, or up to today (current month)"
    )
    items: list[MonthStatsItem]
