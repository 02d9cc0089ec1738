"""What a simulated version would grant (SPEC §5, §10 Versions, §12 Holdouts): the ledger's
rules without the ledger — one grant per key; a held-out user's grant recorded `held_out`,
spending nothing; budgets spent in decision order by the others — and the difference between
two versions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.rewards.domain.budget import GRANTED, allocate
from services.rewards.domain.decisions import GrantDecision, distinct
from services.rewards.domain.holdout import HELD_OUT, SimulatedHoldout
from services.rewards.domain.prices import Prices, cost_fen


@dataclass(frozen=True, slots=True)
class Simulation:
    decisions: list[GrantDecision]
    statuses: list[str]
    budget_use: dict[str, dict[str, int | None]]
    holdout: SimulatedHoldout | None = None
    prices: Prices = field(default_factory=dict)


def outcome(
    decisions: Sequence[GrantDecision],
    budgets: Mapping[str, int],
    holdout: SimulatedHoldout | None = None,
    prices: Prices | None = None,
) -> Simulation:
    """The grants `decisions` would make on an empty ledger with these budgets, the way the
    ledger records them (store/ledger.py `record_grants`): a user in the `holdout` is evaluated
    like anyone — a place under a cap or in a draw is taken — then recorded `held_out`, with no
    budget; the others spend the budgets in decision order."""
    grants = distinct(decisions)
    out = [holdout is not None and holdout.holds(d.user_id) for d in grants]
    treated, spent = allocate(
        [d.demand() for d, o in zip(grants, out, strict=True) if not o], budgets
    )
    each = iter(treated)
    statuses = [HELD_OUT if o else next(each) for o in out]
    use: dict[str, dict[str, int | None]] = {
        k: {"units": spent.get(k, 0), "budget": budgets.get(k)}
        for k in sorted(set(spent) | set(budgets))
    }
    return Simulation(grants, statuses, use, holdout, dict(prices or {}))


def summary(sim: Simulation, sample: int) -> dict[str, Any]:
    """Grants by rule and status; `granted` and `held_out` apart; units, money and budget use of
    the granted ones only (a held-out or budget-exhausted grant costs nothing)."""
    by_rule: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    units: dict[str, int] = defaultdict(int)
    for d, status in zip(sim.decisions, sim.statuses, strict=True):
        by_rule[d.rule_id][status] += 1
        if status == GRANTED:
            for kind, amount in d.items:
                units[kind] += amount
    money = {k: cost_fen(sim.prices, k, n) for k, n in sorted(units.items())}
    return {
        "grants": len(sim.decisions),
        "granted": sim.statuses.count(GRANTED),
        "held_out": sim.statuses.count(HELD_OUT),
        "by_rule": {r: dict(v) for r, v in by_rule.items()},
        "units": dict(sorted(units.items())),
        "money_fen": money,
        "money_fen_total": sum(m for m in money.values() if m is not None),
        "budget_use": sim.budget_use,
        "holdout": None if sim.holdout is None else sim.holdout.document(),
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
    """What the candidate grants that the baseline does not, and the reverse, and changes (of
    items or status: `granted` ↔ `held_out` when the versions hold out different shares — both
    are simulated with the campaign's one seed, so a user held out at 10% is at 20% too)."""
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
