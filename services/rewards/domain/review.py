"""Review hold (SPEC §10, §14): a campaign with `review: true` records its period-end grants
`held` — reserving budget like granted ones, published and notified nothing — until an approver
who neither authored nor submitted the campaign version releases the period (the held grants
become `granted` and are published once) or excludes subjects with a reason (their held grants
become `excluded`, release their budget, and are never published).

Held grants are listed for the approver with the anomaly flags of their group's month and their
user's days, flagged ones first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from services.rewards.domain.budget import GRANTED
from services.rewards.domain.periods import label_days
from shared.errors import Forbidden

HELD = "held"
EXCLUDED = "excluded"
EXCLUDED_BY_LIST = "on the campaign's exclusion list"
SELF_REVIEW = (
    "a held period is released or its subjects excluded by an approver who neither authored "
    "nor submitted the campaign version (SPEC §10 Review hold)"
)


def held(statuses: Sequence[str]) -> list[str]:
    """A reviewed campaign's statuses: what would be granted is held; budget_exhausted stays."""
    return [HELD if s == GRANTED else s for s in statuses]


@dataclass(frozen=True, slots=True)
class VersionPeople:
    """Who wrote and who submitted one campaign version."""

    version: int
    author: str
    submitted_by: str | None


def check_reviewer(versions: Iterable[VersionPeople], actor: str) -> None:
    """403 unless `actor` neither authored nor submitted any version the period's grants (or
    the live campaign) come from."""
    for v in versions:
        if actor in {v.author, v.submitted_by}:
            raise Forbidden(f"{SELF_REVIEW}; you wrote version {v.version}", code="self_review")


def period_days(label: str, first_day: date) -> tuple[date, date]:
    """First and last day of the period a label names (day, ISO week, month or year)."""
    return label_days(label)
