"""Revoke a grant (SPEC §5): a recorded state change, never a delete; its budget is released,
the revocation published through the outbox and audited, all in one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.domain.fulfilment import FULFILLED
from services.rewards.store import ledger
from shared.audit import audit
from shared.errors import Conflict, NotFound


async def revoke_grant(
    sessions: async_sessionmaker[AsyncSession],
    grant_id: int,
    reason: str,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """The revoked grant; 404 if there is none, 409 unless it is granted and not fulfilled."""
    async with sessions() as session, session.begin():
        before = await ledger.grant_by_id(session, grant_id)
        if before is None:
            raise NotFound(f"no grant {grant_id}", code="grant_not_found")
        await ledger.lock_campaign_grants(session, before["campaign_id"])
        after = await ledger.revoke_grant(session, grant_id, reason, now)
        if after is None:
            state = before["status"]
            if before["fulfilment_status"] == FULFILLED:
                state = f"{state} and fulfilled"
            raise Conflict(
                f"grant {grant_id} is {state}; only granted grants not yet fulfilled can be "
                "revoked",
                code="not_revocable",
            )
        await audit(
            session, actor, "grant.revoke", f"campaign:{after['campaign_id']}", before, after
        )
    ledger.Recorded(rows=[after]).count()
    return after
