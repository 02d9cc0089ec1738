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

    async def receipts(self, batch: list[tuple[str, bool, str]]) -> None:
        """Stored first, then matched: a receipt may arrive before its send is recorded."""
        async with self._sessions() as session, session.begin():
            await store.lock_messages(session, self._provider, [r[0] for r in batch])
            await store.record_receipts(session, self._provider, batch)
            changed = await store.apply_receipts(session, self._provider, [r[0] for r in batch])
        for row in changed:
            NOTIFICATIONS.labels(row["channel"], row["category"], row["status"]).inc()

    async def reply(self, user_id: str, text: str) -> None:
        if text.strip().upper() in UNSUBSCRIBE:
            async with self._sessions() as session, session.begin():
                await config.set_opt_out(session, user_id, True, "sms", "sms-reply")
