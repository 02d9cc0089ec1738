"""Weight profiles (SPEC §4), with four eyes on the live one (issue 18): a change to `default`
— the weights every leaderboard, flag and changelog record uses unless asked otherwise — is a
proposal until a second principal approves it; other profiles change at once. Every step is
audited; `default` cannot be deleted."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.vitality import Weights
from services.scoring.store import profiles
from shared.errors import Conflict, Forbidden, NotFound

LIVE = "default"


async def read(session: AsyncSession, name: str) -> dict[str, Any]:
    for p in await profiles.profiles(session):
        if p["name"] == name:
            pending = await profiles.proposal(session, name)
            if pending is not None:
                pending.pop("name")
            return {**p, "pending": pending}
    raise NotFound(f"no weight profile named '{name}'")


async def change(
    session: AsyncSession, name: str, weights: Weights, actor: str
) -> tuple[int, dict[str, Any]]:
    """(200, the profile) for any profile but the live one; (202, the live profile with the
    change pending) for `default`."""
    if name != LIVE:
        _, after = await profiles.save_profile(session, name, weights, actor)
        return 200, {**after, "pending": None}
    await profiles.propose(session, name, weights, actor)
    return 202, await read(session, name)


async def approve(session: AsyncSession, name: str, actor: str) -> dict[str, Any]:
    """Apply the pending change — by anyone but its proposer."""
    pending = await profiles.proposal(session, name, lock=True)
    if pending is None:
        raise Conflict(f"no change of '{name}' is waiting for approval", code="nothing_pending")
    if pending["proposed_by"] == actor:
        raise Forbidden(
            "the principal who proposed a change of the live profile cannot approve it: "
            "ask a second approver",
            code="self_approval",
        )
    weights = Weights(pending["w_growth"], pending["w_activity"], pending["w_bonus"])
    await profiles.save_profile(session, name, weights, actor)
    await profiles.drop_proposal(session, name, actor, "profile.approve")
    return await read(session, name)


async def reject(session: AsyncSession, name: str, actor: str) -> dict[str, Any]:
    if await profiles.proposal(session, name, lock=True) is None:
        raise Conflict(f"no change of '{name}' is waiting for approval", code="nothing_pending")
    await profiles.drop_proposal(session, name, actor, "profile.reject")
    return await read(session, name)


async def delete(session: AsyncSession, name: str, actor: str) -> None:
    if name == LIVE:
        raise Conflict(
            "the default profile is the live one and cannot be deleted; change its weights "
            "instead (a second principal approves)",
            code="live_profile",
        )
    if await profiles.delete_profile(session, name, actor) is None:
        raise NotFound(f"no weight profile named '{name}'")
