"""The scoring consumer: decode → validate → apply the events (use case) → commit, per batch.

Offsets live in the database, committed in the same transaction as the results and the
processed-event ledger (shared/consumer.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.domain.anomalies import AnomalyThresholds
from services.scoring.domain.retention import Retention
from services.scoring.usecases.apply_events import BatchOutcome, apply_events
from services.scoring.usecases.group_facts import count_refused
from services.scoring.usecases.ledger_retention import LedgerDays, refused_sealed
from shared.consumer import DUPLICATES, E2E, PROCESSED, Record, TransactionalConsumer
from shared.contract import Envelope, decode_envelope
from shared.topics import EVENTS_DLQ, EVENTS_TOPIC

SERVICE = "scoring"
# Children looked up once: `.labels()` per event costs more than the observation itself.
E2E_S, DUPLICATES_N = E2E.labels(SERVICE), DUPLICATES.labels(SERVICE)


class EventsConsumer(TransactionalConsumer[Envelope, BatchOutcome]):
    def __init__(
        self,
        bootstrap: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        tz: ZoneInfo,
        group_id: str = "scoring",
        max_records: int = 5000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retention: Retention | None = None,
        thresholds: AnomalyThresholds | None = None,
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            sessions=sessions,
            producer=producer,
            topic=EVENTS_TOPIC,
            dlq_topic=EVENTS_DLQ,
            group_id=group_id,
            service=SERVICE,
            max_records=max_records,
        )
        self._tz = tz
        self._clock = clock
        self._retention = retention or Retention()
        self._thresholds = thresholds or AnomalyThresholds()
        self._ledger_days = LedgerDays(sessions, self._retention)

    def decode(self, record: Record) -> Envelope:
        return decode_envelope(record.value)

    async def prepare(self, values: list[Envelope]) -> None:
        await self._ledger_days.prepare_events(values, self._clock())

    async def apply(self, session: AsyncSession, values: list[Envelope]) -> BatchOutcome:
        return await apply_events(session, values, self._tz, self._clock(), self._thresholds)

    def after_commit(self, result: BatchOutcome, replayed: int) -> None:
        committed = datetime.now(UTC)
        DUPLICATES_N.inc(result.duplicates + replayed)
        refused_sealed(result.sealed)
        count_refused(result.refused)
        by_type: dict[str, int] = defaultdict(int)
        observe = E2E_S.observe
        for env in result.new_events:
            by_type[env.event.type] += 1
            observe(max(0.0, (committed - env.received_at).total_seconds()))
        for kind, n in by_type.items():
            PROCESSED.labels(SERVICE, kind).inc(n)
