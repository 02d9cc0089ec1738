"""Group vitality and a member's part of it (SPEC §4).

Leaderboards rank groups by vitality in SQL; store/rules_sql.py renders the formulas from
`WEIGHTED_COMPONENTS`, and tests/integration/test_scoring_rules_sql.py pins SQL = Python.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PROFILE = "default"  # the weights of the changelog and of reads that name none


@dataclass(frozen=True, slots=True)
class Weights:
    growth: float = 1.0
    activity: float = 1.0
    bonus: float = 1.0


# The weight (a field of `Weights`) that multiplies each group-month component.
WEIGHTED_COMPONENTS = (
    ("growth", "points_growth"),
    ("activity", "activity_points"),
    ("bonus", "bonus_points"),
)
# A member's own month counts toward the first two; bonus cards belong to the group.
MEMBER_COMPONENTS = (("growth", "points_delta"), ("activity", "activity_points"))


def vitality(points_growth: int, activity: int, bonus_points: int, w: Weights) -> float:
    """w_growth·points_growth + w_activity·activity_points + w_bonus·bonus_points."""
    return w.growth * points_growth + w.activity * activity + w.bonus * bonus_points


def member_contribution(points_delta: int, activity: int, w: Weights) -> float:
    """What one member's month adds to the group's vitality (ranks "top members")."""
    return w.growth * points_delta + w.activity * activity
