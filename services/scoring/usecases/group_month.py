"""Read a group's month for the API: components, vitality, rank and top members, and its
members (SPEC §4); a group scoring never saw is a 404 (SPEC §9)."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.periods import end_of_month
from services.scoring.domain.vitality import Weights
from services.scoring.store import groups, queries
from shared.errors import NotFound


async def read_group_month(
    session: AsyncSession, group_id: str, month: date, w: Weights, tz: ZoneInfo, top: int
) -> dict[str, Any]:
    """The group's month under weights `w` (zeros but its members, when nothing happened in
    it); its rank is None when it is not on a leaderboard (never created, dissolved, or no
    member, as of the month's end)."""
    row = await queries.group_month(session, group_id, month, w, tz)
    if row is None:
        raise _not_found(group_id)
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


async def read_group_members(
    session: AsyncSession, group_id: str, month: date, tz: ZoneInfo, limit: int, after: str | None
) -> list[str]:
    """One page of the group's members as of the month's end (as of now for the current one)."""
    if not await groups.exists(session, group_id):
        raise _not_found(group_id)
    return await queries.group_members(session, group_id, end_of_month(month, tz), limit, after)


def _not_found(group_id: str) -> NotFound:
    return NotFound(f"scoring never saw group '{group_id}'", code="group_not_found")
