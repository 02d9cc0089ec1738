"""Notify's inputs (SPEC §6): grants from engage.grants.v1 (category `reward`) and send requests
from engage.notify.v1, each turned into a notification once per (source, user, template) — a
replayed record finds its row and queues nothing — with the offsets, in one transaction."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaProducer
from pydantic import ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.domain.messages import describe_rewards
from services.notify.domain.templates import CATEGORIES
from services.notify.store import notifications as store
from services.notify.store.notifications import NewNotification
from shared.consumer import (
    BATCH,
    PROCESSED,
    TXN,
    Batch,
    Record,
    TransactionalConsumer,
    claim_offsets,
    store_offsets,
)
from shared.text import SafeTextModel

GRANTS_TOPIC = "engage.grants.v1"
REQUESTS_TOPIC = "engage.notify.v1"
DLQ_TOPIC = "engage.notify.dlq"
REWARD_TEMPLATE = "reward_granted"
SERVICE = "notify"


class SendRequest(SafeTextModel):
    """A record on engage.notify.v1."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(pattern=r"^[A-Za-z0-9_.:@+\-]{1,64}$")
    template: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    category: Literal["reward", "marketing", "service"]
    params: dict[str, str | int | float] = Field(default_factory=dict)
    channel: Literal["im", "sms"] = "im"
    locale: Literal["zh-CN", "en"] = "zh-CN"


def grant_notice(doc: dict[str, Any], locale: str = "zh-CN") -> NewNotification | None:
    """A new granted grant becomes a reward notice; other grant events send nothing."""
    if doc.get("event") != "recorded" or doc.get("status") != "granted":
        return None
    return NewNotification(
        source=f"grant:{doc['grant_id']}",
        user_id=str(doc["user_id"]),
        template=REWARD_TEMPLATE,
        category="reward",
        channel="im",
        locale=locale,
        params={
            "campaign": str(doc.get("campaign_name") or doc["campaign_id"]),
            "rewards": describe_rewards(doc["items"], locale),
            "fulfil_by": str(doc["fulfil_by"]),
        },
    )


def request_notice(req: SendRequest) -> NewNotification:
    return NewNotification(
        source=f"request:{req.request_id}",
        user_id=req.user_id,
        template=req.template,
        category=req.category,
        channel=req.channel,
        locale=req.locale,
        params=dict(req.params),
    )


class InputsConsumer(TransactionalConsumer):
    """One topic's records → notifications."""

    def __init__(
        self,
        topic: str,
        bootstrap: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        group_id: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            sessions=sessions,
            producer=producer,
            topic=topic,
            dlq_topic=DLQ_TOPIC,
            group_id=group_id,
            service=SERVICE,
        )
        self._clock = clock
        self._record_type = "grant" if topic == GRANTS_TOPIC else "send_request"

    def _parse(self, record: Record) -> NewNotification | None:
        if self.topic == GRANTS_TOPIC:
            return grant_notice(orjson.loads(record.value))
        return request_notice(SendRequest.model_validate_json(record.value))

    async def process(self, batch: Batch) -> None:
        started = time.perf_counter()
        first = {tp.partition: rs[0].offset for tp, rs in batch.items() if rs}
        last = {tp.partition: rs[-1].offset for tp, rs in batch.items() if rs}
        async with self._sessions() as session, session.begin():
            stored = await claim_offsets(session, self.topic, first)
            self.count_replayed(batch, stored)
            items: list[NewNotification] = []
            for tp, records in batch.items():
                for record in records:
                    if record.offset < stored[tp.partition]:
                        continue
                    try:
                        item = self._parse(record)
                    except (ValidationError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
                        await self.dead_letter(record, f"unreadable: {exc!r}"[:500])
                        continue
                    if item is not None and item.category in CATEGORIES:
                        items.append(item)
            policies = await store.policies(session)
            new = await store.enqueue(session, items, policies, self._clock())
            await store_offsets(session, self.topic, {p: max(stored[p], last[p] + 1) for p in last})
        PROCESSED.labels(SERVICE, self._record_type).inc(new)
        TXN.labels(SERVICE).observe(time.perf_counter() - started)
        BATCH.labels(SERVICE).observe(sum(len(rs) for rs in batch.values()))
