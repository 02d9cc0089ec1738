"""Relays an outbox table to a Kafka topic: written in the business transaction, published
after it, deleted only once the broker acknowledged.

Two shapes: (key, value, seq) rows carry their value; (key, seq) rows only name what changed,
and `render` reads the entities' current values when publishing — one record per key per pass,
however often it changed (a changelog is latest state, SPEC §4). A crash between publish and
delete republishes the same latest value.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)

OUTBOX_PUBLISHED = Counter(
    "engage_outbox_published_total", "Outbox records published to Kafka.", ["service", "topic"]
)
OUTBOX_PENDING = Gauge(
    "engage_outbox_pending", "Outbox records waiting to be published.", ["service", "topic"]
)


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        table: str,
        topic: str,
        service: str,
        batch: int = 10_000,
        interval_s: float = 1.0,
        render: Callable[[AsyncSession, list[str]], Awaitable[dict[str, bytes]]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._producer = producer
        self._table = table
        self._topic = topic
        self._service = service
        self._batch = batch
        self._interval_s = interval_s
        self._render = render

    async def relay_once(self) -> int:
        """Publish up to one batch; return how many records went out."""
        columns = "key, seq" if self._render else "key, value, seq"
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    text(
                        f"SELECT {columns} FROM {self._table} ORDER BY seq "
                        "LIMIT :n FOR UPDATE SKIP LOCKED"
                    ),
                    {"n": self._batch},
                )
            ).all()
            if not rows:
                return 0
            if self._render is not None:
                values = await self._render(session, [r.key for r in rows])
                records = [(r.key, values[r.key]) for r in rows if r.key in values]
            else:
                records = [(r.key, bytes(r.value)) for r in rows]
            futures = [
                await self._producer.send(self._topic, value, key=key.encode())
                for key, value in records
            ]
            for future in futures:
                await future
            # Delete only what was sent: a key rewritten meanwhile has a new seq and stays.
            await session.execute(
                text(
                    f"DELETE FROM {self._table} t USING unnest(CAST(:k AS text[]), "
                    "CAST(:s AS bigint[])) AS x(k, s) WHERE t.key = x.k AND t.seq = x.s"
                ),
                {"k": [r.key for r in rows], "s": [r.seq for r in rows]},
            )
        OUTBOX_PUBLISHED.labels(self._service, self._topic).inc(len(rows))
        return len(rows)

    async def pending(self) -> int:
        async with self._sessions() as session:
            n = (await session.execute(text(f"SELECT count(*) FROM {self._table}"))).scalar_one()
        OUTBOX_PENDING.labels(self._service, self._topic).set(n)
        return int(n)

    async def run(self) -> None:
        """Drain the outbox; once drained, let it gather for `interval_s` before the next pass.

        The table keeps one row per key, so waiting coalesces repeated changes of the same
        entity (a user's month, a group's month change with nearly every batch) into one record.
        """
        counted = 0.0
        while True:
            try:
                sent = await self.relay_once()
                if time.monotonic() - counted >= 1.0:  # the backlog gauge, at most once a second
                    await self.pending()
                    counted = time.monotonic()
            except (KafkaError, OperationalError, DBAPIError, OSError) as exc:
                log.warning("outbox relay failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(1)
                continue
            if sent < self._batch:
                await asyncio.sleep(self._interval_s)
