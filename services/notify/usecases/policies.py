"""Send policies per category (SPEC §6): read, and changed by an admin; every change audited."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.domain.policy import Policy
from services.notify.store import config
from services.notify.store.config import PolicyRow
from shared.audit import audit
from shared.db import unit_of_work


async def list_policies(sessions: async_sessionmaker[AsyncSession]) -> list[PolicyRow]:
    async with sessions() as session:
        return await config.policy_rows(session)


async def set_policy(
    sessions: async_sessionmaker[AsyncSession], policy: Policy, actor: str
) -> PolicyRow:
    async with unit_of_work(sessions) as session:
        before = await config.policy_row(session, policy.category)
        await config.save_policy(session, policy, actor)
        after = await config.policy_row(session, policy.category)
        assert after is not None
        await audit(session, actor, "policy.save", f"policy:{policy.category}", before, after)
    return after
