"""Draws as stored: seeds committed at activation, entries frozen with their digest at draw
time, and what anyone needs to recompute a draw (SPEC §5, domain/draws.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain import draws
from services.rewards.domain.periods import Period
from shared.errors import NotFound

DRAW_ENTRIES = Gauge(
    "engage_draw_entries", "Entries frozen in the latest draw.", ["campaign", "rule"]
)


@dataclass(frozen=True, slots=True)
class FrozenDraws:
    """Settlement's draws for one campaign version: entries frozen, committed seed (SPEC §5)."""

    session: AsyncSession
    campaign_id: str
    version: int
    now: datetime

    async def __call__(
        self, rule_id: str, period: Period, entries: list[str], winners: int, repeat: bool
    ) -> list[str]:
        """Freeze the entries with their digest and draw with the committed seed."""
        seed = await _committed_seed(self.session, self.campaign_id, rule_id, period)
        won = draws.draw(seed, entries, winners, repeat)
        await self.session.execute(
            text(
                "UPDATE draws SET entries = :e, entries_digest = :d, winners = :w, "
                "drawn_at = :now, version = :v "
                "WHERE campaign_id = :c AND rule_id = :r AND period = :p"
            ),
            {
                "e": entries,
                "d": draws.entries_digest(entries),
                "w": won,
                "now": self.now,
                "v": self.version,
                "c": self.campaign_id,
                "r": rule_id,
                "p": period.label,
            },
        )
        DRAW_ENTRIES.labels(self.campaign_id, rule_id).set(len(entries))
        return won


async def _committed_seed(
    session: AsyncSession, campaign_id: str, rule_id: str, period: Period
) -> str:
    row = (
        await session.execute(
            text(
                "SELECT seed FROM draws WHERE campaign_id = :c AND rule_id = :r AND period = :p "
                "FOR UPDATE"
            ),
            {"c": campaign_id, "r": rule_id, "p": period.label},
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
                "r": rule_id,
                "p": period.label,
                "s": seed,
                "h": draws.commitment(seed),
                "a": period.start,
            },
        )
        return seed
    return str(row.seed)


async def revealed_seeds(session: AsyncSession, campaign_id: str) -> dict[tuple[str, str], str]:
    """The seeds of the campaign's draws already drawn, by (rule id, period)."""
    rows = await session.execute(
        text(
            "SELECT rule_id, period, seed FROM draws WHERE campaign_id = :c "
            "AND drawn_at IS NOT NULL"
        ),
        {"c": campaign_id},
    )
    return {(r.rule_id, r.period): r.seed for r in rows}


async def commit_seeds(
    session: AsyncSession, campaign_id: str, rule_id: str, periods: Sequence[Period]
) -> None:
    """Choose a seed for each period now and publish only its hash (SPEC §5)."""
    seeds = [draws.new_seed() for _ in periods]
    await session.execute(
        text(
            "INSERT INTO draws (campaign_id, rule_id, period, seed, seed_sha256, "
            "period_starts_at) SELECT :c, :r, * FROM unnest(CAST(:p AS text[]), "
            "CAST(:s AS text[]), CAST(:h AS text[]), CAST(:a AS timestamptz[])) "
            "ON CONFLICT DO NOTHING"
        ),
        {
            "c": campaign_id,
            "r": rule_id,
            "p": [p.label for p in periods],
            "s": seeds,
            "h": [draws.commitment(s) for s in seeds],
            "a": [p.start for p in periods],
        },
    )


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
