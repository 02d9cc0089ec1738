"""What comes back from the SMSC: delivery receipts and replies ("TD" = unsubscribe)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.dispatcher import NOTIFICATIONS
from services.notify.store import config
from services.notify.store import notifications as store

UNSUBSCRIBE = frozenset({"TD", "T", "STOP", "UNSUBSCRIBE", "退订"})


class Inbound:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], provider: str) -> None:
        self._sessions = sessions
        self._provider = provider

    async def receipt(self, message_id: str, delivered: bool, stat: str) -> None:
        """Stored first, then matched: it may arrive before the send is recorded."""
        async with self._sessions() as session, session.begin():
            await store.record_receipt(session, self._provider, message_id, delivered, stat)
            changed = await store.apply_receipts(session, self._provider, [message_id])
        for row in changed:
            NOTIFICATIONS.labels(row["channel"], row["category"], row["status"]).inc()

    async def reply(self, user_id: str, text: str) -> None:
        if text.strip().upper() in UNSUBSCRIBE:
            async with self._sessions() as session, session.begin():
                await config.set_opt_out(session, user_id, True, "sms", "sms-reply")
