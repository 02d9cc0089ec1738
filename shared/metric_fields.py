"""The fields of `engage.metrics.v1` records (SPEC §4, changelog): what scoring publishes for
each key and what rewards' conditions may name (`user.day.<field>`, ...)."""

from __future__ import annotations

# user:<id>:<YYYY-MM-DD> — stored counters, then the points derived from them
USER_DAY_COUNTERS = (
    "messages",
    "messages_sms",
    "messages_mobile",
    "online_seconds_pc",
    "online_seconds_mobile",
    "points_delta",
    "friends_added",
    "checkins",
    "logins",
)
DAY_POINTS = ("online_points", "message_points", "activity_points")
# user:<id>:<YYYY-MM> — sums of the days (caps apply per day), plus `active` (messages ≥ 1)
USER_MONTH_COUNTERS = (
    "messages",
    "messages_sms",
    "online_seconds_pc",
    "online_seconds_mobile",
    "online_points",
    "message_points",
    "activity_points",
    "points_delta",
    "friends_added",
    "checkins",
    "logins",
    "active_days",
)
# group:<id>:<YYYY-MM> — plus vitality (default weights), attributes and members
GROUP_MONTH_COUNTERS = (
    "members",
    "active_members",
    "activity_points",
    "points_growth",
    "bonus_points",
    "group_messages",
)
