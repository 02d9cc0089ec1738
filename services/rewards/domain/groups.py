"""Groups as rewards sees them: a group's month as scoring published it, its vitality under a
rule's weights, and which groups a period-end rule considers (SPEC §1, §4)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from pydantic import ConfigDict, Field

from services.rewards.domain.periods import Period
from shared.text import SafeTextModel


class Weights(SafeTextModel):
    """The weights of the three vitality components (SPEC §4); a rank rule may set its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    growth: float = Field(default=1.0, ge=-1000, le=1000, allow_inf_nan=False)
    activity: float = Field(default=1.0, ge=-1000, le=1000, allow_inf_nan=False)
    bonus: float = Field(default=1.0, ge=-1000, le=1000, allow_inf_nan=False)


DEFAULT_WEIGHTS = Weights()


def vitality(counters: Mapping[str, float], weights: Weights) -> float:
    """A group-month's vitality: growth × points_growth + activity × activity_points + bonus ×
    bonus_points (SPEC §4).

    The one definition in rewards. Scoring publishes each group-month's vitality under the
    default weights, but it is a service of its own and services never import each other
    (SPEC §2), and a rank rule may weigh the components differently: so rewards computes it
    here, from the counters scoring published.
    """
    return (
        weights.growth * counters.get("points_growth", 0)
        + weights.activity * counters.get("activity_points", 0)
        + weights.bonus * counters.get("bonus_points", 0)
    )


@dataclass(frozen=True, slots=True)
class GroupMonth:
    """A group's month as scoring published it: counters, attributes, members at month end."""

    group_id: str
    owner_id: str | None
    province: str | None
    created_at: datetime | None
    dissolved_at: datetime | None
    member_ids: tuple[str, ...]
    counters: Mapping[str, float]  # members, active_members, activity_points, ...
    month: date | None = None  # first day of the month these values are for

    def standing_at(self, end: datetime) -> bool:
        """Created before `end` and not dissolved by then (the leaderboard's groups, SPEC §4)."""
        return (
            self.created_at is not None
            and self.created_at < end
            and (self.dissolved_at is None or self.dissolved_at >= end)
        )

    def values(
        self, weights: Weights = DEFAULT_WEIGHTS, effective: int | None = None
    ) -> dict[str, float]:
        """`group.month.*` values, vitality under `weights`."""
        c = self.counters
        out = {f"group.month.{k}": float(v) for k, v in c.items()}
        out["group.month.vitality"] = vitality(c, weights)
        members = c.get("members", 0)
        out["group.month.active_ratio"] = c.get("active_members", 0) / members if members else 0.0
        if effective is not None:
            out["group.month.effective_active_members"] = float(effective)
        return out


def considered(
    groups: Iterable[GroupMonth], period: Period, enrolled: set[str] | None
) -> list[GroupMonth]:
    """The groups standing at the period's end and, when the campaign requires it, enrolled."""
    return [
        g
        for g in groups
        if g.standing_at(period.end) and (enrolled is None or g.group_id in enrolled)
    ]


def effective_active_members(
    groups: Iterable[GroupMonth], active_users: set[str]
) -> dict[str, int]:
    """Per group, its active members who belong to no other of these groups (SPEC §1)."""
    groups = list(groups)
    memberships = Counter(u for g in groups for u in set(g.member_ids))
    return {
        g.group_id: sum(1 for u in set(g.member_ids) if u in active_users and memberships[u] == 1)
        for g in groups
    }
