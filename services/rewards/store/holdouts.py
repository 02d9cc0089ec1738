"""Holdout seeds as stored (SPEC §12, domain/holdout.py): one per campaign, committed when it is
first activated; its SHA-256 readable at once, the seed itself once the campaign has ended."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain import draws
from services.rewards.domain.holdout import Holdout
from services.rewards.domain.lifecycle import ENDED


async def commit_seed(session: AsyncSession, campaign_id: str) -> str:
    """The campaign's holdout seed, chosen now if it has none (its hash is then public)."""
    seed = draws.new_seed()
    await session.execute(
        text(
            "INSERT INTO holdout_seeds (campaign_id, seed, seed_sha256) VALUES (:c, :s, :h) "
            "ON CONFLICT (campaign_id) DO NOTHING"
        ),
        {"c": campaign_id, "s": seed, "h": draws.commitment(seed)},
    )
    row = await session.execute(
        text("SELECT seed FROM holdout_seeds WHERE campaign_id = :c"), {"c": campaign_id}
    )
    return str(row.scalar_one())


async def seed_of(session: AsyncSession, campaign_id: str) -> str | None:
    """The campaign's committed holdout seed, None before there is one; never chooses one (a
    simulation's READ ONLY transaction reads it)."""
    row = await session.execute(
        text("SELECT seed FROM holdout_seeds WHERE campaign_id = :c"), {"c": campaign_id}
    )
    seed = row.scalar_one_or_none()
    return None if seed is None else str(seed)


async def holdout_of(session: AsyncSession, campaign_id: str, percent: int) -> Holdout | None:
    """The holdout rules apply for a campaign version holding out `percent` of users."""
    if percent <= 0:
        return None
    return Holdout(await commit_seed(session, campaign_id), percent)


async def published(session: AsyncSession, campaign_id: str) -> dict[str, Any] | None:
    """The seed's SHA-256 and when it was committed; the seed once the campaign has ended."""
    row = (
        await session.execute(
            text(
                "SELECT h.seed_sha256, h.committed_at, "
                f"CASE WHEN c.state = '{ENDED}' THEN h.seed END AS seed "
                "FROM holdout_seeds h JOIN campaigns c USING (campaign_id) "
                "WHERE h.campaign_id = :c"
            ),
            {"c": campaign_id},
        )
    ).first()
    return None if row is None else dict(row._mapping)
