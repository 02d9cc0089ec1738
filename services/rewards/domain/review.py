"""Review hold (SPEC §10, §14): a campaign with `review: true` records its period-end grants
`held` — reserving budget like granted ones, published and notified nothing — until an approver
who neither authored nor submitted the campaign version (none of its authors — domain/lifecycle.py
`writers` — nor its submitter) releases the period (the held grants become `granted` and are
published once) or excludes subjects with a reason (their held grants become `excluded`, release
their budget, and are never published).

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
    """Who wrote and who submitted one campaign version: `author` saved it, `authors` are all
    who wrote its content (lifecycle.writers: the edits it was saved from and every version with
    the same definition; () = just `author`)."""

    version: int
    author: str
    submitted_by: str | None
    authors: tuple[str, ...] = ()

    @property
    def people(self) -> frozenset[str]:
        """Everyone barred from reviewing what this version granted."""
        submitter = {self.submitted_by} if self.submitted_by else set()
        return frozenset({self.author, *self.authors, *submitter})


def check_reviewer(versions: Iterable[VersionPeople], actor: str) -> None:
    """403 unless `actor` neither authored (as any of its authors) nor submitted any version
    the period's grants (or the live campaign) come from."""
    for v in versions:
        if actor in v.people:
            raise Forbidden(
                f"{SELF_REVIEW}; you wrote or submitted (the content of) version {v.version}",
                code="self_review",
            )


def period_days(label: str, first_day: date) -> tuple[date, date]:
    """First and last day of the period a label names (day, ISO week, month or year)."""
    return label_days(label)
