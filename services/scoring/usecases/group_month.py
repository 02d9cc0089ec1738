"""Read a group's month for the API: components, vitality, rank and top members (SPEC §4)."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.vitality import Weights
from services.scoring.store import queries
from shared.errors import NotFound


async def read_group_month(
    session: AsyncSession, group_id: str, month: date, w: Weights, tz: ZoneInfo, top: int
) -> dict[str, Any]:
    """The group's month under weights `w`; its rank is None when it is not on a leaderboard
    (never created, or dissolved, as of the month's end)."""
    row = await queries.group_month(session, group_id, month, w, tz)
    if row is None:
        raise NotFound(f"no group '{group_id}'")
    rank = None
    if row["ranked"] and row["province"]:
        rank = 1 + await queries.groups_ranked_before(
            session,
            row["province"],
            month,
            w,
            tz,
            vitality=row["vitality"],
            active_members=row["active_members"],
            group_id=group_id,
        )
    return {
        **row,
        "dissolved": row["dissolved_at"] is not None,
        "rank": rank,
        "top_members": await queries.top_members(session, group_id, month, w, tz, top),
    }
