"""Daily points, vitality and leaderboard order (SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass

ONLINE_POINTS_CAP = 4
MESSAGE_POINTS_CAP = 20
PC_SECONDS_PER_POINT = 900  # 15 minutes on PC
MOBILE_SECONDS_PER_POINT = 300  # 5 minutes on mobile


def online_points(online_seconds_pc: int, online_seconds_mobile: int) -> int:
    """4 points = one hour on PC or 20 minutes on mobile, at most 4 a day."""
    return min(
        ONLINE_POINTS_CAP,
        online_seconds_pc // PC_SECONDS_PER_POINT
        + online_seconds_mobile // MOBILE_SECONDS_PER_POINT,
    )


def message_points(messages: int) -> int:
    return min(messages, MESSAGE_POINTS_CAP)


def activity_points(messages: int, online_seconds_pc: int, online_seconds_mobile: int) -> int:
    return online_points(online_seconds_pc, online_seconds_mobile) + message_points(messages)


@dataclass(frozen=True, slots=True)
class Weights:
    growth: float = 1.0
    activity: float = 1.0
    bonus: float = 1.0


def vitality(points_growth: int, activity: int, bonus_points: int, w: Weights) -> float:
    return w.growth * points_growth + w.activity * activity + w.bonus * bonus_points
