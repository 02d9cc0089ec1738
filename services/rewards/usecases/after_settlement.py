"""Mark settled periods whose inputs changed (SPEC §14 After settlement), as a batch of metric
values arrives — before it is stored, so the values it replaces are still there to compare.

Runs in the metrics consumer's transaction (usecases/apply_metrics.py). Grants never change
here: the period is marked, counted and alerted on; what to do is the operator's call
(docs/operations.md, SettledPeriodChanged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.after_settlement import (
    SubjectChange,
    compare,
    day_label,
    group_values,
    month_label,
    subject_scope,
    user_values,
    watched,
)
from services.rewards.domain.rules.registry import AnyRule, period_end
from services.rewards.store import settle, snapshots
from services.rewards.store.campaigns import LiveCampaign
from services.rewards.store.settle import SettlementKey

SETTLED_PERIOD_CHANGES = Counter(
    "engage_settled_period_changes_total",
    "Batches of metric values that changed the inputs of an already settled period, counted "
    "once per (campaign, rule, period) and batch.",
)
SETTLED_PERIOD_CHANGES.inc(0)  # a zero series from the start, for increase()

Values = Mapping[str, float]


async def mark_changed_settlements(
    session: AsyncSession,
    campaigns: Sequence[LiveCampaign],
    batch: snapshots.SnapshotBatch,
    now: datetime,
) -> list[SettlementKey]:
    """Record how the batch changes settled periods' subjects; the periods it changed. Only
    flushes; call before the batch is stored."""
    labels = (
        {day_label(d) for _, d in batch.user_days}
        | {month_label(m) for _, m in batch.user_months}
        | {month_label(m) for _, m in batch.groups}
    )
    settled = await settle.settled_among(session, labels)
    if not settled:
        return []
    rules = {
        (c.campaign_id, rule.id): rule
        for c in campaigns
        for rule, _ in period_end(c.definition.rules)
    }
    kinds = {
        (c.campaign_id, rule.id): kind
        for c in campaigns
        for rule, kind in period_end(c.definition.rules)
    }
    changed: list[SettlementKey] = []
    for key in sorted(settled):
        rule = rules.get(key[:2])
        if rule is None:  # a rule the live version no longer has
            continue
        metrics = watched(kinds[key[:2]].reads(rule), subject_scope(rule))
        now_values, before = await _subjects(session, rule, key[2], batch)
        if not now_values:
            continue
        earlier = await settle.settled_values_of(session, key, now_values)
        changes: list[SubjectChange] = []
        moved = False
        for subject, values in now_values.items():
            prev = before.get(subject)
            if compare(subject, metrics, values, prev, prev is None).changed:
                moved = True
            if subject in earlier:
                settled_values, new_subject = earlier[subject]
                changes.append(compare(subject, metrics, values, settled_values, new_subject))
            elif prev is None or compare(subject, metrics, values, prev, False).changed:
                at_settlement = None if prev is None else {m: prev.get(m, 0.0) for m in metrics}
                changes.append(compare(subject, metrics, values, at_settlement, prev is None))
        await settle.record_changes(session, key, changes, now)
        if moved:
            changed.append(key)
    return changed


def count_changes(changed: Sequence[SettlementKey]) -> None:
    """Once the batch committed."""
    if changed:
        SETTLED_PERIOD_CHANGES.inc(len(changed))


async def _subjects(
    session: AsyncSession, rule: AnyRule, label: str, batch: snapshots.SnapshotBatch
) -> tuple[dict[str, Values], dict[str, Values]]:
    """The rule's subjects of period `label` in the batch: their values now, and as stored
    before the batch (absent when new to the period)."""
    scope = subject_scope(rule)
    if scope == "group.month":
        groups = {g.group_id: g for (_, m), g in batch.groups.items() if month_label(m) == label}
        if not groups:
            return {}, {}
        month = next(iter(groups.values())).month
        assert month is not None
        stored = await snapshots.group_months_in(session, month, members=False, only=groups)
        return (
            {gid: group_values(rule, g) for gid, g in groups.items()},
            {g.group_id: group_values(rule, g) for g in stored},
        )
    if scope == "user.day":
        days = {k: v for k, v in batch.user_days.items() if day_label(k[1]) == label}
        previous = await snapshots.user_days_of(session, days)
    else:
        days = {k: v for k, v in batch.user_months.items() if month_label(k[1]) == label}
        previous = await snapshots.user_months_of(session, days)
    return (
        {u: user_values(scope, v) for (u, _), v in days.items()},
        {u: user_values(scope, v) for (u, _), v in previous.items()},
    )
