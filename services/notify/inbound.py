"""What comes back from the SMSC: delivery receipts and replies ("TD" = unsubscribe)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.dispatcher import NOTIFICATIONS
from services.notify.domain.opt_outs import is_unsubscribe
from services.notify.usecases.opt_outs import set_opt_out
from services.notify.usecases.receipts import record_receipts


class Inbound:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], provider: str) -> None:
        self._sessions = sessions
        self._provider = provider

    async def receipts(self, batch: list[tuple[str, bool, str]]) -> None:
        changed = await record_receipts(self._sessions, self._provider, batch)
        for row in changed:
            NOTIFICATIONS.labels(row.channel, row.category, row.status).inc()

    async def reply(self, user_id: str, text: str) -> None:
        if is_unsubscribe(text):
            await set_opt_out(self._sessions, user_id, True, "sms", "sms-reply")
