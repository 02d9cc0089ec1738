"""Reading notifications (SPEC §6): a user's with their statuses, counts by status, and what the
sandbox provider would have sent."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.store import config, notifications
from services.notify.store.config import SandboxMessageRow
from services.notify.store.notifications import NotificationRow


@dataclass(frozen=True, slots=True)
class UserNotifications:
    items: list[NotificationRow]
    counts: dict[str, int]  # all of the user's notifications by status, not only this page's
    opted_out: bool


async def user_notifications(
    sessions: async_sessionmaker[AsyncSession], user_id: str, limit: int, after: int | None
) -> UserNotifications:
    async with sessions() as session:
        return UserNotifications(
            await notifications.by_user(session, user_id, limit, after),
            await notifications.status_counts(session, user_id=user_id),
            await config.is_opted_out(session, user_id),
        )


async def status_counts(
    sessions: async_sessionmaker[AsyncSession], source_prefix: str | None
) -> dict[str, int]:
    async with sessions() as session:
        return await notifications.status_counts(session, source_prefix=source_prefix)


async def sandbox_messages(
    sessions: async_sessionmaker[AsyncSession], user_id: str | None, limit: int, after: int | None
) -> list[SandboxMessageRow]:
    async with sessions() as session:
        return await config.sandbox_messages(session, user_id, limit, after)
