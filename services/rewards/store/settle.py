"""Settlement (SPEC §5): period-end rules run once per period after the grace, on exactly one
replica, catching up after downtime.

Exactly once: the settlement row is inserted first in the same transaction that records the
grants. A second replica's insert waits on the primary key until the first commits, then finds
the row and skips; if the first dies, its transaction rolls back and the second settles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.domain.lifecycle import ACTIVE, ENDED
from services.rewards.domain.periods import Period, periods_in_window
from services.rewards.domain.rules import LotteryRule, RankRule, ScaledRule
from services.rewards.store.campaigns import LiveCampaign, live_campaigns
from services.rewards.store.draws import freeze_draw as freeze_draw_in
from services.rewards.store.evaluate import period_decisions
from services.rewards.store.ledger import (
    Recorded,
    dissolutions,
    record_grants,
    revoke_for_dissolved_groups,
)

SETTLEMENT_SECONDS = Histogram(
    "engage_settlement_seconds",
    "Time to settle one (campaign, rule, period).",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
BUDGET_REMAINING = Gauge("engage_budget_remaining", "Units of budget left.", ["campaign", "kind"])
BUDGET_LIMIT = Gauge("engage_budget_limit", "Units of budget in all.", ["campaign", "kind"])

PeriodRule = RankRule | LotteryRule | ScaledRule


@dataclass(frozen=True, slots=True)
class Due:
    campaign: LiveCampaign
    rule: PeriodRule
    period: Period


async def due_settlements(session: AsyncSession, now: datetime, tz: ZoneInfo) -> list[Due]:
    """Periods of active or ended campaigns past their grace and not yet settled, oldest first.

    A paused campaign settles nothing; on resume it catches up.
    """
    done = {
        (r.campaign_id, r.rule_id, r.period)
        for r in await session.execute(text("SELECT campaign_id, rule_id, period FROM settlements"))
    }
    out: list[Due] = []
    for c in await live_campaigns(session):
        if c.state not in (ACTIVE, ENDED):
            continue
        d = c.definition
        for rule in d.rules:
            if not isinstance(rule, RankRule | LotteryRule | ScaledRule):
                continue
            for p in periods_in_window(rule.period, d.starts_at, d.ends_at, tz):
                if c.ended_at is not None and p.start >= c.ended_at:
                    continue  # ended early: later periods never happen
                if p.settle_due() <= now and (c.campaign_id, rule.id, p.label) not in done:
                    out.append(Due(c, rule, p))
    out.sort(key=lambda x: (x.period.end, x.campaign.campaign_id, x.rule.id))
    return out


@dataclass(frozen=True, slots=True)
class Settled:
    campaign_id: str
    rule_id: str
    period: str
    version: int
    grants: int
    seconds: float


async def settle(
    sessions: async_sessionmaker[AsyncSession], due: Due, tz: ZoneInfo, now: datetime
) -> Settled | None:
    """Settle one period, or None if another replica has (or is doing) it."""
    c, rule, period = due.campaign, due.rule, due.period
    started = time.perf_counter()
    recorded = Recorded()
    async with sessions() as session, session.begin():
        claimed = (
            await session.execute(
                text(
                    "INSERT INTO settlements (campaign_id, rule_id, period, version) "
                    "VALUES (:c, :r, :p, :v) ON CONFLICT DO NOTHING RETURNING 1"
                ),
                {"c": c.campaign_id, "r": rule.id, "p": period.label, "v": c.version},
            )
        ).first()
        if claimed is None:
            return None

        async def freeze_draw(
            campaign_id: str, lottery: LotteryRule, p: Period, entries: list[str]
        ) -> list[str]:
            return await freeze_draw_in(session, campaign_id, c.version, lottery, p, entries, now)

        decisions = await period_decisions(
            session, c.campaign_id, c.definition, rule, period, tz, freeze_draw
        )
        recorded = await record_grants(
            session, c.campaign_id, c.version, decisions, c.definition.name
        )
        # A group dissolved before this settlement (its record may have come first) still
        # loses its revocable grants: recorded, then revoked, so the ledger shows both.
        revocable = {d.group_id for d in decisions if d.revocable and d.group_id}
        if revocable:
            dissolved = await dissolutions(session, revocable)
            recorded.rows += await revoke_for_dissolved_groups(session, dissolved, now, tz)
        seconds = time.perf_counter() - started
        await session.execute(
            text(
                "UPDATE settlements SET seconds = :s, grants = :n, settled_at = :now "
                "WHERE campaign_id = :c AND rule_id = :r AND period = :p"
            ),
            {
                "s": seconds,
                "n": len(recorded.rows),
                "now": now,
                "c": c.campaign_id,
                "r": rule.id,
                "p": period.label,
            },
        )
    recorded.count()
    SETTLEMENT_SECONDS.labels(rule.kind).observe(seconds)
    return Settled(c.campaign_id, rule.id, period.label, c.version, len(recorded.rows), seconds)


async def refresh_budget_gauges(session: AsyncSession) -> None:
    rows = await session.execute(
        text("SELECT campaign_id, kind, total, total - spent AS left FROM budgets")
    )
    for r in rows:
        BUDGET_REMAINING.labels(r.campaign_id, r.kind).set(r.left)
        BUDGET_LIMIT.labels(r.campaign_id, r.kind).set(r.total)


async def settlements_page(
    session: AsyncSession, campaign_id: str, limit: int, after: str | None
) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            "SELECT campaign_id, rule_id, period, version, settled_at, seconds, grants "
            "FROM settlements WHERE campaign_id = :c AND (CAST(:after AS text) IS NULL "
            "OR rule_id || '/' || period > :after) ORDER BY rule_id || '/' || period LIMIT :n"
        ),
        {"c": campaign_id, "after": after, "n": limit},
    )
    return [dict(r._mapping) for r in rows]
