"""Revoke a grant (SPEC §5): a recorded state change, never a delete; its budget is released,
the revocation published through the outbox and audited, all in one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.domain.fulfilment import FULFILLED
from services.rewards.store import ledger
from services.rewards.usecases.campaigns import owned_grant
from shared.audit import audit
from shared.auth import Principal
from shared.errors import Conflict


async def revoke_grant(
    sessions: async_sessionmaker[AsyncSession],
    grant_id: int,
    reason: str,
    revoking: Principal,
    now: datetime,
) -> dict[str, Any]:
    """The revoked grant; 404 if there is none, 403 `other_team` unless the key acts for its
    campaign's team (or is admin), 409 unless it is granted and not fulfilled."""
    actor = revoking.key_id
    async with sessions() as session, session.begin():
        before = await owned_grant(session, grant_id, revoking)
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
