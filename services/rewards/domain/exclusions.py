"""Exclusions (SPEC §10): per campaign, users and groups that never win.

Rules check them when they evaluate (a ranking or a draw passes over an excluded subject and
the next one wins; the winners' explanation names who was passed over), and settlement and
real-time evaluation check the decisions once more before the ledger records them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.rewards.domain.decisions import GrantDecision

MAX_EXCLUDED = 5000  # per list: an exclusion list is an approver's list, not a segment


@dataclass(frozen=True, slots=True)
class Exclusions:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.users or self.groups)

    def user(self, user_id: str | None) -> bool:
        return user_id is not None and user_id in self.users

    def group(self, group_id: str | None) -> bool:
        return group_id is not None and group_id in self.groups

    def decision(self, d: GrantDecision) -> bool:
        """Whether this decision would reward an excluded user, or for an excluded group."""
        return self.user(d.user_id) or self.group(d.group_id)


NONE = Exclusions()


def without_excluded(
    decisions: Iterable[GrantDecision], exclusions: Exclusions
) -> tuple[list[GrantDecision], list[GrantDecision]]:
    """The decisions that may be recorded, and those dropped because they reward an excluded
    subject (the rules drop them first; this is the settlement's check)."""
    kept: list[GrantDecision] = []
    dropped: list[GrantDecision] = []
    for d in decisions:
        (dropped if exclusions.decision(d) else kept).append(d)
    return kept, dropped
