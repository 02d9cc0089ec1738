"""Budgets (SPEC §5): never overspent; a grant that would overspend is `budget_exhausted`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

GRANTED = "granted"
BUDGET_EXHAUSTED = "budget_exhausted"
REVOKED = "revoked"


def allocate(
    demands: Sequence[Mapping[str, int]], remaining: Mapping[str, int]
) -> tuple[list[str], dict[str, int]]:
    """Status of each demand (units per kind) in order, and the units spent per kind.

    Kinds without a budget are unlimited. A demand is granted whole or not at all: a grant
    that needs 200 fen and 20 SMS with SMS exhausted gets neither.
    """
    left = dict(remaining)
    spent: dict[str, int] = {}
    statuses: list[str] = []
    for demand in demands:
        if all(left.get(k, amount) >= amount for k, amount in demand.items()):
            for k, amount in demand.items():
                if k in left:
                    left[k] -= amount
                spent[k] = spent.get(k, 0) + amount
            statuses.append(GRANTED)
        else:
            statuses.append(BUDGET_EXHAUSTED)
    return statuses, spent
