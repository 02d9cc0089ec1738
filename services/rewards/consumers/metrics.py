"""The rewards consumer of engage.metrics.v1: decode each record, then apply the batch
(usecases/apply_metrics.py) in one transaction with the offsets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.store import snapshots
from services.rewards.usecases.apply_metrics import Applied, apply_metrics
from shared.consumer import PROCESSED, Record, TransactionalConsumer
from shared.topics import METRICS_DLQ, METRICS_TOPIC

SERVICE = "rewards"


class MetricsConsumer(TransactionalConsumer[snapshots.MetricValue, Applied]):
    def __init__(
        self,
        bootstrap: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        tz: ZoneInfo,
        group_id: str = "rewards",
        max_records: int = 5000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            sessions=sessions,
            producer=producer,
            topic=METRICS_TOPIC,
            dlq_topic=METRICS_DLQ,
            group_id=group_id,
            service=SERVICE,
            max_records=max_records,
        )
        self._tz = tz
        self._clock = clock

    def decode(self, record: Record) -> snapshots.MetricValue:
        return snapshots.parse(record.value)

    async def apply(self, session: AsyncSession, values: list[snapshots.MetricValue]) -> Applied:
        return await apply_metrics(session, values, self._tz, self._clock())

    def after_commit(self, result: Applied, replayed: int) -> None:
        result.count()
        for kind, n in (
            ("user_day", len(result.values.user_days)),
            ("user_month", len(result.values.user_months)),
            ("group_month", len(result.values.groups)),
        ):
            PROCESSED.labels(SERVICE, kind).inc(n)
