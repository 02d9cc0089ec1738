"""Grant decisions: what a rule grants, before the ledger records it (SPEC §5).

Every rule kind returns decisions in priority order — the order a tight budget is spent in.
The ledger (store/ledger.py) and the simulation (usecases/simulate.py) turn them into grants
the same way: `distinct` first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

DecisionKey = tuple[str, str, str, str]  # rule id, role, user id, period label


@dataclass(frozen=True, slots=True)
class GrantDecision:
    rule_id: str
    role: str  # "owner", "member" or "user"
    user_id: str
    period: str
    items: tuple[tuple[str, int], ...]  # (reward kind, amount)
    fulfil_by: date
    group_id: str | None = None
    explanation: Mapping[str, Any] = field(default_factory=dict)
    revocable: bool = False  # revoked if its group is dissolved before fulfil_by

    @property
    def key(self) -> DecisionKey:
        """Within a campaign, the ledger grants each key once, ever."""
        return (self.rule_id, self.role, self.user_id, self.period)

    def demand(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for kind, amount in self.items:
            out[kind] += amount
        return dict(out)


def distinct(decisions: Iterable[GrantDecision]) -> list[GrantDecision]:
    """The first decision of each key, in order: the one that can become a grant.

    One grant per (campaign, rule, subject, period), ever (SPEC §5). A member of two winning
    groups, a once-per-campaign threshold met on several days of one batch: the earlier
    decision is the grant, the later ones are the same grant again.
    """
    first: dict[DecisionKey, GrantDecision] = {}
    for d in decisions:
        first.setdefault(d.key, d)
    return list(first.values())
