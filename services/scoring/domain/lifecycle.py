"""A user's lifecycle stage per local month (SPEC §12, after PostHog's lifecycle view).

- `new`: the user's `first_seen` day is in this month (active or not);
- `returning`: active this month and last month;
- `resurrecting`: active this month, not last month, and not new — the user was seen before
  this month (active in an earlier month, or seen without being active);
- `dormant`: active last month, not this month;
- no stage (None): none of these — e.g. inactive this month and last, or not seen yet.

`loyal` sits beside the stage: active this month and the two months before it (≥ 3 consecutive
active months ending this month). "Active" is SPEC §4's monthly `active` (domain.points).

Every active month is exactly one of new / returning / resurrecting, so a month's stage depends
only on `first_seen`, this month's and last month's activity, and `loyal` on the two months
before: a change in month M's activity can change the stages of M and M+1 and `loyal` up to
M+2 — the use case recomputes those (usecases/lifecycle.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

Stage = Literal["new", "returning", "resurrecting", "dormant"]
STAGES: tuple[Stage, ...] = ("new", "returning", "resurrecting", "dormant")
LOYAL_MONTHS = 3  # consecutive active months, this one included


@dataclass(frozen=True, slots=True)
class MonthActivity:
    """What a user's stage in a month is decided from: `active` of this month and the
    `LOYAL_MONTHS - 1` before it (most recent first), and the month of `first_seen`."""

    first_seen_month: date | None
    month: date
    active: bool
    active_last: bool
    active_before_last: bool


@dataclass(frozen=True, slots=True)
class Lifecycle:
    stage: Stage | None
    loyal: bool


NO_LIFECYCLE = Lifecycle(None, False)


def stage_of(m: MonthActivity) -> Stage | None:
    """The month's stage (SPEC §12); None when the user has none this month."""
    if m.first_seen_month is None or m.first_seen_month > m.month:
        return None
    if m.first_seen_month == m.month:
        return "new"
    if m.active:
        return "returning" if m.active_last else "resurrecting"
    return "dormant" if m.active_last else None


def is_loyal(m: MonthActivity) -> bool:
    """Active ≥ 3 consecutive months ending this month."""
    return m.active and m.active_last and m.active_before_last


def lifecycle_of(m: MonthActivity) -> Lifecycle:
    return Lifecycle(stage_of(m), is_loyal(m))


def months_to_recompute(month: date, active_flipped: bool) -> int:
    """How many months from `month` on (it included) a change there can move: its own stage
    always (a new row, a moved `first_seen`); when its activity flipped, the next month's
    stage and `loyal` of the one after."""
    return LOYAL_MONTHS if active_flipped else 1
