"""Apply a batch of engage.metrics.v1 (SPEC §5): store the latest values, fire the real-time
rules of active campaigns (never for an excluded subject, SPEC §10), revoke the revocable grants
of groups dissolved, and mark the settled periods whose inputs the batch changed (SPEC §14).

Runs in the metrics consumer's transaction, so the values, grants, revocations and offsets
commit together. A redelivered record re-evaluates the same values; the ledger's unique key
makes a second grant impossible, so the effect is exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.conditions import NEW_FRIENDS_METRIC
from services.rewards.domain.decisions import GrantDecision, distinct
from services.rewards.domain.exclusions import without_excluded
from services.rewards.domain.lifecycle import ACTIVE
from services.rewards.domain.rules.base import NewValues, RealTimeKind, UserKey
from services.rewards.domain.rules.registry import AnyRule, real_time
from services.rewards.store import snapshots, tickets
from services.rewards.store.campaigns import live_campaigns
from services.rewards.store.holdouts import holdout_of
from services.rewards.store.inputs import StoredInputs
from services.rewards.store.ledger import (
    Recorded,
    lock_campaign_grants,
    record_grants,
    revoke_for_dissolved_groups,
)
from services.rewards.store.settle import SettlementKey
from services.rewards.usecases.after_settlement import count_changes, mark_changed_settlements


@dataclass(slots=True)
class Applied:
    """What one batch of metric records did: fresh values stored, grants recorded, revoked."""

    values: snapshots.SnapshotBatch
    recorded: list[Recorded]
    revoked: Recorded
    changed_settlements: list[SettlementKey]

    def count(self) -> None:
        """Once the batch committed."""
        for r in self.recorded:
            r.count()
        self.revoked.count()
        count_changes(self.changed_settlements)


async def apply_metrics(
    session: AsyncSession, values: list[snapshots.MetricValue], tz: ZoneInfo, now: datetime
) -> Applied:
    """Only flushes: the consumer commits."""
    fresh = snapshots.SnapshotBatch.of(values)
    live = await live_campaigns(session)
    changed = await mark_changed_settlements(session, live, fresh, now)
    seen = await snapshots.store(session, fresh)
    new = NewValues(fresh.user_days, fresh.user_months, list(fresh.groups.values()))
    if seen and any(NEW_FRIENDS_METRIC in kind.reads(rule) for c in live
                    for rule, kind in real_time(c.definition.rules)):  # fmt: skip
        # A user first seen now makes their inviters' new-friend counts move (SPEC §10):
        # those inviters' days are evaluated again.
        again: dict[UserKey, dict[str, float]] = {
            k: {} for k in await snapshots.befriended(session, seen)
        }
        new = NewValues({**again, **fresh.user_days}, new.user_months, new.groups)
    recorded: list[Recorded] = []
    for campaign in live:
        if campaign.state != ACTIVE:
            continue
        d = campaign.definition
        inputs = StoredInputs.of(session, campaign.campaign_id, d, tz)
        holdout = await holdout_of(session, campaign.campaign_id, d.holdout_percent)
        for rule, kind in real_time(d.rules):
            decisions, _ = without_excluded(
                await kind.evaluate(rule, new, inputs), await inputs.exclusions()
            )
            if kind.capped(rule) and decisions:
                decisions = await _first_come(session, campaign.campaign_id, rule, kind, decisions)
            recorded.append(
                await record_grants(
                    session,
                    campaign.campaign_id,
                    campaign.version,
                    decisions,
                    d.name,
                    holdout=holdout,
                )
            )
    dissolved = {
        g.group_id: g.dissolved_at for g in fresh.groups.values() if g.dissolved_at is not None
    }
    revoked = await revoke_for_dissolved_groups(session, dissolved, now, tz)
    return Applied(fresh, recorded, Recorded(rows=revoked), changed)


async def _first_come(
    session: AsyncSession,
    campaign_id: str,
    rule: AnyRule,
    kind: RealTimeKind[Any],
    decisions: list[GrantDecision],
) -> list[GrantDecision]:
    """The decisions that still fit under the rule's cap on winners (SPEC §10), counted with
    the campaign's grants locked so two replicas never both take the last place."""
    await lock_campaign_grants(session, campaign_id)
    fresh = await tickets.not_yet_recorded(session, campaign_id, distinct(decisions))
    per_period, total = await tickets.winners_so_far(session, campaign_id, rule.id)
    return kind.cap(rule, fresh, per_period, total)
