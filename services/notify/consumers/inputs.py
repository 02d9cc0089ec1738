"""Notify's inputs (SPEC §6): grants from engage.grants.v1 (category `reward`) and send requests
from engage.notify.v1, each turned into a notification once per (source, user, template) — a
replayed record finds its row and queues nothing — with the offsets, in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.domain.notices import NewNotification, grant_notice, request_notice, schedule
from services.notify.domain.templates import CATEGORIES
from services.notify.store import notifications as store
from shared.consumer import PROCESSED, Record, TransactionalConsumer
from shared.records import GrantRecord, SendRequest
from shared.topics import GRANTS_TOPIC, NOTIFY_DLQ

SERVICE = "notify"


class InputsConsumer(TransactionalConsumer[NewNotification | None, int]):
    """One topic's records → notifications."""

    def __init__(
        self,
        topic: str,
        bootstrap: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        group_id: str,
        gather: timedelta = timedelta(0),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            sessions=sessions,
            producer=producer,
            topic=topic,
            dlq_topic=NOTIFY_DLQ,
            group_id=group_id,
            service=SERVICE,
        )
        self._clock = clock
        self._gather = gather
        self._record_type = "grant" if topic == GRANTS_TOPIC else "send_request"

    def decode(self, record: Record) -> NewNotification | None:
        """A record → the notification it asks for (None: nothing to send)."""
        if self.topic == GRANTS_TOPIC:
            return grant_notice(GrantRecord.model_validate_json(record.value))
        return request_notice(SendRequest.model_validate_json(record.value))

    async def apply(self, session: AsyncSession, values: list[NewNotification | None]) -> int:
        items = [v for v in values if v is not None and v.category in CATEGORIES]
        policies = await store.policies(session)
        return await store.enqueue(session, schedule(items, policies, self._clock(), self._gather))

    def after_commit(self, result: int, replayed: int) -> None:
        PROCESSED.labels(SERVICE, self._record_type).inc(result)
