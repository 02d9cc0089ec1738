"""Notifications (SPEC §6, §11): a user's with their statuses and their timeline, counts by
status, what the sandbox provider would have sent, and a notice sent again (admin)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.domain.notices import NewNotification, resend_notice, schedule
from services.notify.store import config, notifications
from services.notify.store.config import SandboxMessageRow
from services.notify.store.notifications import NotificationRow
from shared.audit import audit
from shared.db import unit_of_work
from shared.errors import NotFound


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


async def campaign_counts(
    sessions: async_sessionmaker[AsyncSession], campaign_id: str
) -> notifications.CampaignNotices:
    async with sessions() as session:
        return await notifications.campaign_counts(session, campaign_id)


async def sandbox_messages(
    sessions: async_sessionmaker[AsyncSession], user_id: str | None, limit: int, after: int | None
) -> list[SandboxMessageRow]:
    async with sessions() as session:
        return await config.sandbox_messages(session, user_id, limit, after)


async def timeline(
    sessions: async_sessionmaker[AsyncSession], user_id: str, limit: int, after: int | None
) -> list[NotificationRow]:
    """Every notification of the user in the order they were queued; 404 when notify never had
    anything for them."""
    async with sessions() as session:
        if not await notifications.has_any(session, user_id):
            raise NotFound(f"notify has nothing for user {user_id}", code="user_not_found")
        return await notifications.by_user(session, user_id, limit, after)


async def resend(
    sessions: async_sessionmaker[AsyncSession], notification_id: int, actor: str
) -> NotificationRow:
    """Send a notice again: a new notification linked to the original, due now, through the
    same policy (cap, window, TTL) as any other (SPEC §11). The original is locked, so
    concurrent resends number themselves 1, 2, …"""
    async with unit_of_work(sessions) as session:
        original = await notifications.get(session, notification_id, lock=True)
        if original is None:
            raise NotFound(f"no notification {notification_id}", code="notification_not_found")
        nth = await notifications.resends(session, notification_id) + 1
        notice = resend_notice(
            NewNotification(original.source, original.user_id, original.template,
                            original.category, original.channel, original.locale,
                            original.params, priority=original.priority),
            notification_id, nth,
        )  # fmt: skip
        policies = await notifications.policies(session)
        (item,) = schedule([notice], policies, datetime.now(UTC))
        new_id = await notifications.enqueue_one(session, item)
        assert new_id is not None  # its source is new: resend:<id>:<n> under the lock
        created = await notifications.get(session, new_id)
        assert created is not None
        await audit(session, actor, "notification.resend", f"notification:{notification_id}",
                    None, created)  # fmt: skip
    return created
