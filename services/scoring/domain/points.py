"""Daily points and activity (SPEC §4): the caps, and what makes a day or a month active.

The store sums daily points per month in SQL; store/rules_sql.py renders these rules from the
constants below, and tests/integration/test_scoring_rules_sql.py pins SQL = Python.
"""

from __future__ import annotations

from dataclasses import dataclass

ONLINE_POINTS_CAP = 4
MESSAGE_POINTS_CAP = 20
PC_SECONDS_PER_POINT = 900  # 15 minutes on PC
MOBILE_SECONDS_PER_POINT = 300  # 5 minutes on mobile
ACTIVE_MIN_MESSAGES = 1  # pc/mobile messages; SMS-only users are never active


def online_points(online_seconds_pc: int, online_seconds_mobile: int) -> int:
    """4 points = one hour on PC or 20 minutes on mobile, at most 4 a day."""
    return min(
        ONLINE_POINTS_CAP,
        online_seconds_pc // PC_SECONDS_PER_POINT
        + online_seconds_mobile // MOBILE_SECONDS_PER_POINT,
    )


def message_points(messages: int) -> int:
    return min(messages, MESSAGE_POINTS_CAP)


def is_active(messages: int) -> bool:
    """A day or a month is active with at least one pc/mobile message (SMS never counts)."""
    return messages >= ACTIVE_MIN_MESSAGES


@dataclass(frozen=True, slots=True)
class DayPoints:
    """The points a user's day earns, derived from its stored counters."""

    online_points: int
    message_points: int
    activity_points: int


def day_points(messages: int, online_seconds_pc: int, online_seconds_mobile: int) -> DayPoints:
    """activity_points = online_points + message_points, each capped per day."""
    online = online_points(online_seconds_pc, online_seconds_mobile)
    by_messages = message_points(messages)
    return DayPoints(online, by_messages, online + by_messages)
