"""Enrolling a group in a campaign (SPEC §5, §14): only the group's owner may — proved by their
user token — or a platform key (or an admin) acting for them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.store import campaigns
from services.rewards.store.snapshots import group_owner
from shared.api_auth import Caller, UserCaller
from shared.errors import Forbidden


async def enroll_group(
    session: AsyncSession, campaign_id: str, group_id: str, owner_id: str, caller: Caller
) -> dict[str, Any]:
    """A user token enrolls only a group its user owns now (from scoring's latest month of the
    group); a platform key names the owner, which must be right (422 otherwise)."""
    if isinstance(caller, UserCaller):
        await campaigns.get(session, campaign_id)  # an unknown campaign is 404 for anyone
        found = await group_owner(session, group_id)
        if found is not None and found[0] != caller.sub:
            raise Forbidden(
                f"only the owner of group '{group_id}' may enroll it: the token's user is not "
                "its owner (or use a platform key acting for the owner)",
                code="not_group_owner",
            )
        actor = caller.source
    else:
        actor = caller.key_id
    return await campaigns.enroll(session, campaign_id, group_id, owner_id, actor)
