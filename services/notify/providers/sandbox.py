"""The development provider (SPEC §6): stores what it would send and can fail a share of sends."""

from __future__ import annotations

import random

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.providers.base import ProviderError, SendResult


class SandboxProvider:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channel: str,
        fail_rate: float = 0.0,
        rnd: random.Random | None = None,
    ) -> None:
        self.name = f"sandbox-{channel}"
        self._sessions = sessions
        self._channel = channel
        self._fail_rate = fail_rate
        self._rnd = rnd or random.Random()

    async def send(self, notification_id: int, user_id: str, body: str) -> SendResult:
        if self._rnd.random() < self._fail_rate:
            raise ProviderError("sandbox: simulated failure")
        async with self._sessions() as session, session.begin():
            # Idempotent per notification: a retried send is stored once.
            await session.execute(
                text(
                    "INSERT INTO sandbox_messages (notification_id, channel, user_id, body) "
                    "VALUES (:n, :c, :u, :b) ON CONFLICT (notification_id) DO NOTHING"
                ),
                {"n": notification_id, "c": self._channel, "u": user_id, "b": body},
            )
        return SendResult(self.name, f"sbx-{notification_id}", delivered=True)
