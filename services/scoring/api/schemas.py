"""Response and request bodies of the scoring API."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.pagination import Page

FIRST_SEEN = "local day of the user's earliest event scoring applied (SPEC §10)"


class _UserMetrics(BaseModel):
    user_id: str
    first_seen: date = Field(description=FIRST_SEEN)
    messages: int
    messages_sms: int
    online_seconds_pc: int
    online_seconds_mobile: int
    online_points: int
    message_points: int
    activity_points: int
    points_delta: int
    friends_added: int
    checkins: int
    logins: int


class UserDay(_UserMetrics):
    day: str
    messages_mobile: int = Field(description="messages sent from the mobile client")


class UserMonth(_UserMetrics):
    month: str
    active_days: int
    active: bool = Field(description="messages ≥ 1 this month; SMS-only users are never active")


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


class Profile(WeightsBody):
    name: str
    updated_at: datetime
    updated_by: str


class Member(BaseModel):
    user_id: str
    activity_points: int
    points_delta: int
    messages: int
    contribution: float


class GroupMonth(BaseModel):
    group_id: str
    month: str
    name: str | None
    province: str | None
    owner_id: str | None
    dissolved: bool
    members: int
    active_members: int
    activity_points: int
    points_growth: int
    bonus_points: int
    group_messages: int
    vitality: float
    weights: WeightsBody
    profile: str
    rank: int | None = Field(
        description="Rank within the province's leaderboard; null if the "
        "group is not eligible (no group_created, or dissolved)"
    )
    top_members: list[Member]


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
