"""A user's timeline in rewards (SPEC §11, care): the grants made to them, newest first, each
with its explanation, status and fulfilment — what support needs to answer "where is my
reward?". `engage care` joins it with scoring's and notify's."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.store import ledger, snapshots
from shared.errors import NotFound


async def user_timeline(
    session: AsyncSession, user_id: str, limit: int, before: int | None
) -> list[dict[str, Any]]:
    """One page of the user's grants, newest first; 404 when rewards knows nothing of the user
    (no grant, no metric value)."""
    grants = await ledger.user_grants_page(session, user_id, limit, before)
    if not grants and before is None and not await snapshots.has_metrics(session, user_id):
        raise NotFound(f"rewards knows nothing of user {user_id}", code="user_not_found")
    return grants
