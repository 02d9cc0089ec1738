"""Simulation / backtest (SPEC §5): run any campaign version over a past range of stored
metrics, in a READ ONLY transaction — side effects are impossible, not merely avoided."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.budget import allocate
from services.rewards.domain.periods import month_period, periods_in_window
from services.rewards.domain.rules import CampaignDefinition, LotteryRule, RankRule, ScaledRule
from services.rewards.domain.settlement import GrantDecision
from services.rewards.store import snapshots
from services.rewards.store.evaluate import period_decisions, simulated_draw, threshold_decisions


@dataclass(frozen=True, slots=True)
class Simulation:
    decisions: list[GrantDecision]
    statuses: list[str]
    budget_use: dict[str, dict[str, int | None]]


def _months(first: date, last: date) -> list[date]:
    out, m = [], first.replace(day=1)
    while m <= last:
        out.append(m)
        m = date(m.year + 1, 1, 1) if m.month == 12 else date(m.year, m.month + 1, 1)
    return out


async def run(
    session: AsyncSession,
    campaign_id: str,
    definition: CampaignDefinition,
    first: date,
    last: date,
    tz: ZoneInfo,
    now: datetime,
) -> Simulation:
    """Grants the version would make for periods within [first, last] that have ended."""
    revealed = await session.execute(
        text(
            "SELECT rule_id, period, seed FROM draws WHERE campaign_id = :c "
            "AND drawn_at IS NOT NULL"
        ),
        {"c": campaign_id},
    )
    draw = simulated_draw({(r.rule_id, r.period): r.seed for r in revealed})
    decisions: list[GrantDecision] = []
    user_days: dict[tuple[str, date], dict[str, float]] | None = None
    for rule in definition.rules:
        if isinstance(rule, RankRule | LotteryRule | ScaledRule):
            for p in periods_in_window(rule.period, definition.starts_at, definition.ends_at, tz):
                if first <= p.first_day <= last and p.end <= now:
                    decisions += await period_decisions(
                        session, campaign_id, definition, rule, p, tz, draw
                    )
            continue
        if user_days is None:
            user_days = {
                (u, d): v for u, d, v in await snapshots.user_days_between(session, first, last)
            }
        user_months: dict[tuple[str, date], dict[str, float]] = {}
        groups = []
        for m in _months(first, last):
            if rule.entity == "user" and rule.period == "month":
                user_months |= {
                    (u, m): v for u, v in (await snapshots.user_months_in(session, m)).items()
                }
            if rule.entity == "group" and month_period(m, tz).end <= now:
                groups += await snapshots.group_months_in(session, m)
        decisions += await threshold_decisions(
            session, campaign_id, definition, rule, user_days, user_months, groups, tz
        )
    unique: dict[tuple[str, str, str, str], GrantDecision] = {}
    for d in decisions:
        unique.setdefault(d.key, d)
    ordered = list(unique.values())
    budgets: dict[str, int] = {str(k): v for k, v in definition.budgets.items()}
    statuses, spent = allocate([d.demand() for d in ordered], budgets)
    use: dict[str, dict[str, int | None]] = {
        k: {"units": spent.get(k, 0), "budget": budgets.get(k)}
        for k in sorted(set(spent) | set(budgets))
    }
    return Simulation(ordered, statuses, use)


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
