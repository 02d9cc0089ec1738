"""After settlement (SPEC §14): a settled period's inputs that change later — late or imported
events re-publish a day or a month scoring had published before — mark that period
`changed_after_settlement`, with the size of the change. Grants never change by themselves.

What is compared is a period-end rule's own subjects in its own period: the groups of a month
for a group rule (`group.month.*`), the users of a day or month for a user rule
(`user.day.*` / `user.month.*`), on the metrics the rule reads in that scope. A subject changed
when it is new to the period (it was not there at settlement) or when one of those metrics moved;
the size is the number of such subjects and the largest absolute move of a metric, measured
against the values the subject had when the period settled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.rewards.domain.groups import DEFAULT_WEIGHTS, GroupMonth, Weights


def subject_scope(rule: Any) -> str:
    """The scope of a period-end rule's subjects: `group.month` or `user.<period>`."""
    scopes: tuple[str, ...] = rule.scopes()
    return "group.month" if scopes == ("group.month",) else f"user.{rule.period}"


def watched(reads: frozenset[str], scope: str) -> frozenset[str]:
    """The metrics a rule reads in its subjects' own scope."""
    return frozenset(m for m in reads if m.startswith(f"{scope}."))


def group_values(rule: Any, group: GroupMonth) -> dict[str, float]:
    """A group's `group.month.*` values as the rule sees them (a rank rule weighs vitality)."""
    weights: Weights = getattr(rule, "weights", DEFAULT_WEIGHTS)
    return group.values(weights)


def user_values(scope: str, counters: Mapping[str, float]) -> dict[str, float]:
    return {f"{scope}.{k}": float(v) for k, v in counters.items()}


@dataclass(frozen=True, slots=True)
class SubjectChange:
    """How one subject of a settled period differs now from when it settled."""

    subject_id: str
    settled_values: Mapping[str, float]  # the watched metrics at settlement
    new_subject: bool  # absent from the period when it settled
    max_abs_delta: float

    @property
    def changed(self) -> bool:
        return self.new_subject or self.max_abs_delta > 0


def compare(
    subject_id: str,
    metrics: frozenset[str],
    now: Mapping[str, float],
    settled: Mapping[str, float] | None,
    new_subject: bool,
) -> SubjectChange:
    """`now` against the values at settlement (`settled`, None = the subject had none)."""
    base = dict(settled or {})
    delta = max((abs(now.get(m, 0.0) - base.get(m, 0.0)) for m in metrics), default=0.0)
    return SubjectChange(subject_id, base, new_subject, delta)


def day_label(day: date) -> str:
    return day.isoformat()


def month_label(first_day: date) -> str:
    return first_day.isoformat()[:7]
