"""The rewards consumer of engage.fulfilment.v1: decode each FulfilmentRecord, then apply the
batch (usecases/fulfil.py) in one transaction with the offsets; a record that is malformed or
contradicts the ledger goes to engage.fulfilment.dlq with the reason."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.usecases.fulfil import AppliedFulfilments, apply_fulfilments
from shared.consumer import DUPLICATES, PROCESSED, Record, TransactionalConsumer
from shared.records import FulfilmentRecord
from shared.topics import FULFILMENT_DLQ, FULFILMENT_TOPIC

SERVICE = "rewards"


class FulfilmentConsumer(TransactionalConsumer[FulfilmentRecord, AppliedFulfilments]):
    def __init__(
        self,
        bootstrap: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        group_id: str = "rewards-fulfilment",
        max_records: int = 5000,
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            sessions=sessions,
            producer=producer,
            topic=FULFILMENT_TOPIC,
            dlq_topic=FULFILMENT_DLQ,
            group_id=group_id,
            service=SERVICE,
            max_records=max_records,
        )

    def decode(self, record: Record) -> FulfilmentRecord:
        # A ValidationError is a ValueError: the template dead-letters it with its reason.
        return FulfilmentRecord.model_validate_json(record.value)

    async def apply(
        self, session: AsyncSession, values: list[FulfilmentRecord]
    ) -> AppliedFulfilments:
        return await apply_fulfilments(session, values)

    def after_commit(self, result: AppliedFulfilments, replayed: int) -> None:
        result.count()
        PROCESSED.labels(SERVICE, "fulfilment").inc(sum(result.recorded.values()))
        DUPLICATES.labels(SERVICE).inc(result.repeated)
