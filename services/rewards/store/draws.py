"""Draws as stored: seeds committed at activation, entries frozen with their digest at draw
time, and what anyone needs to recompute a draw (SPEC §5, domain/draws.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain import draws
from services.rewards.domain.periods import Period
from services.rewards.domain.rules import LotteryRule
from shared.errors import NotFound

DRAW_ENTRIES = Gauge(
    "engage_draw_entries", "Entries frozen in the latest draw.", ["campaign", "rule"]
)


async def freeze_draw(
    session: AsyncSession,
    campaign_id: str,
    version: int,
    rule: LotteryRule,
    period: Period,
    entries: list[str],
    now: datetime,
) -> list[str]:
    """Freeze the entries with their digest and draw with the committed seed."""
    row = (
        await session.execute(
            text(
                "SELECT seed FROM draws WHERE campaign_id = :c AND rule_id = :r AND period = :p "
                "FOR UPDATE"
            ),
            {"c": campaign_id, "r": rule.id, "p": period.label},
        )
    ).first()
    if row is None:  # a period the activation did not know (window edited): committed late
        seed = draws.new_seed()
        await session.execute(
            text(
                "INSERT INTO draws (campaign_id, rule_id, period, seed, seed_sha256, "
                "period_starts_at) VALUES (:c, :r, :p, :s, :h, :a)"
            ),
            {
                "c": campaign_id,
                "r": rule.id,
                "p": period.label,
                "s": seed,
                "h": draws.commitment(seed),
                "a": period.start,
            },
        )
    else:
        seed = row.seed
    winners = draws.draw(seed, entries, rule.winners, rule.repeat_winners)
    await session.execute(
        text(
            "UPDATE draws SET entries = :e, entries_digest = :d, winners = :w, drawn_at = :now, "
            "version = :v WHERE campaign_id = :c AND rule_id = :r AND period = :p"
        ),
        {
            "e": entries,
            "d": draws.entries_digest(entries),
            "w": winners,
            "now": now,
            "v": version,
            "c": campaign_id,
            "r": rule.id,
            "p": period.label,
        },
    )
    DRAW_ENTRIES.labels(campaign_id, rule.id).set(len(entries))
    return winners


async def draws_of(session: AsyncSession, campaign_id: str) -> list[dict[str, Any]]:
    """Every draw's commitment; seeds only of draws already drawn."""
    rows = await session.execute(
        text(
            "SELECT campaign_id, rule_id, period, seed_sha256, committed_at, period_starts_at, "
            "drawn_at, version, entries_digest, cardinality(entries) AS entry_count, "
            "cardinality(winners) AS winner_count, "
            "CASE WHEN drawn_at IS NOT NULL THEN seed END AS seed "
            "FROM draws WHERE campaign_id = :c ORDER BY rule_id, period"
        ),
        {"c": campaign_id},
    )
    return [_public(dict(r._mapping)) for r in rows]


async def draw_of(
    session: AsyncSession, campaign_id: str, rule_id: str, period: str
) -> dict[str, Any]:
    row = (
        await session.execute(
            text(
                "SELECT campaign_id, rule_id, period, seed_sha256, committed_at, "
                "period_starts_at, drawn_at, version, entries_digest, entries, winners, "
                "cardinality(entries) AS entry_count, cardinality(winners) AS winner_count, "
                "CASE WHEN drawn_at IS NOT NULL THEN seed END AS seed FROM draws "
                "WHERE campaign_id = :c AND rule_id = :r AND period = :p"
            ),
            {"c": campaign_id, "r": rule_id, "p": period},
        )
    ).first()
    if row is None:
        raise NotFound(
            f"no draw for rule '{rule_id}' and period '{period}' in campaign '{campaign_id}'",
            code="draw_not_found",
        )
    return _public(dict(row._mapping))


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    # A seed chosen after its period began could have been chosen knowing the entries.
    doc["committed_before_period"] = doc["committed_at"] <= doc["period_starts_at"]
    return doc
