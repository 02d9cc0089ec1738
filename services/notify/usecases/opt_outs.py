"""Opt-outs (SPEC §6): through the API, or by an SMS reply; every change audited."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.store import config
from shared.audit import audit
from shared.db import unit_of_work


async def set_opt_out(
    sessions: async_sessionmaker[AsyncSession], user_id: str, out: bool, via: str, actor: str
) -> bool:
    """Opt a user out of (or back into) marketing messages; True if anything changed."""
    async with unit_of_work(sessions) as session:
        changed = await config.set_opt_out(session, user_id, out, via)
        if changed:
            await audit(session, actor, "opt_out" if out else "opt_in", f"user:{user_id}",
                        None, {"via": via})  # fmt: skip
    return changed
