"""What a simulated version would grant (SPEC §5, §10 Versions): the ledger's rules without
the ledger — one grant per key, budgets spent in decision order — and the difference between
two versions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.rewards.domain.budget import allocate
from services.rewards.domain.decisions import GrantDecision, distinct


@dataclass(frozen=True, slots=True)
class Simulation:
    decisions: list[GrantDecision]
    statuses: list[str]
    budget_use: dict[str, dict[str, int | None]]


def outcome(decisions: Sequence[GrantDecision], budgets: Mapping[str, int]) -> Simulation:
    """The grants `decisions` would make on an empty ledger with these budgets."""
    granted = distinct(decisions)
    statuses, spent = allocate([d.demand() for d in granted], budgets)
    use: dict[str, dict[str, int | None]] = {
        k: {"units": spent.get(k, 0), "budget": budgets.get(k)}
        for k in sorted(set(spent) | set(budgets))
    }
    return Simulation(granted, statuses, use)


def summary(sim: Simulation, sample: int) -> dict[str, Any]:
    by_rule: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d, status in zip(sim.decisions, sim.statuses, strict=True):
        by_rule[d.rule_id][status] += 1
    return {
        "grants": len(sim.decisions),
        "by_rule": {r: dict(v) for r, v in by_rule.items()},
        "budget_use": sim.budget_use,
        "sample": [
            decision_document(d, s)
            for d, s in list(zip(sim.decisions, sim.statuses, strict=True))[:sample]
        ],
    }


def decision_document(d: GrantDecision, status: str) -> dict[str, Any]:
    return {
        "rule_id": d.rule_id,
        "role": d.role,
        "user_id": d.user_id,
        "period": d.period,
        "status": status,
        "items": [{"kind": k, "amount": a} for k, a in d.items],
        "fulfil_by": d.fulfil_by,
        "group_id": d.group_id,
        "explanation": d.explanation,
    }


def diff(candidate: Simulation, baseline: Simulation, sample: int) -> dict[str, Any]:
    """What the candidate grants that the baseline does not, and the reverse, and changes."""
    a = {d.key: (d, s) for d, s in zip(candidate.decisions, candidate.statuses, strict=True)}
    b = {d.key: (d, s) for d, s in zip(baseline.decisions, baseline.statuses, strict=True)}
    added = [k for k in a if k not in b]
    removed = [k for k in b if k not in a]
    changed = [k for k in a if k in b and (a[k][0].items, a[k][1]) != (b[k][0].items, b[k][1])]
    return {
        "added": len(added),
        "removed": len(removed),
        "changed": len(changed),
        "added_sample": [decision_document(*a[k]) for k in added[:sample]],
        "removed_sample": [decision_document(*b[k]) for k in removed[:sample]],
        "changed_sample": [
            {"candidate": decision_document(*a[k]), "baseline": decision_document(*b[k])}
            for k in changed[:sample]
        ],
    }
