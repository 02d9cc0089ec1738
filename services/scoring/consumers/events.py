"""The scoring consumer: decode → validate → plan (domain) → apply (store) → commit, per batch.

Offsets live in the database, committed in the same transaction as the results and the
processed-event ledger (shared/consumer.py).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.domain.batch import plan_batch
from services.scoring.store.apply import apply_batch
from shared.consumer import (
    BATCH,
    DUPLICATES,
    E2E,
    PROCESSED,
    TXN,
    Batch,
    Record,
    TransactionalConsumer,
    claim_offsets,
    store_offsets,
)
from shared.contract import EVENTS_TOPIC, Envelope, decode_envelope

DLQ_TOPIC = "engage.events.dlq"
SERVICE = "scoring"
# Children looked up once: `.labels()` per event costs more than the observation itself.
E2E_S, TXN_S, BATCH_N, DUPLICATES_N = (
    E2E.labels(SERVICE),
    TXN.labels(SERVICE),
    BATCH.labels(SERVICE),
    DUPLICATES.labels(SERVICE),
)


class EventsConsumer(TransactionalConsumer):
    def __init__(
        self,
        bootstrap: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        tz: ZoneInfo,
        group_id: str = "scoring",
        max_records: int = 5000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            sessions=sessions,
            producer=producer,
            topic=EVENTS_TOPIC,
            dlq_topic=DLQ_TOPIC,
            group_id=group_id,
            service=SERVICE,
            max_records=max_records,
        )
        self._tz = tz
        self._clock = clock

    async def process(self, batch: Batch) -> None:
        envelopes: list[tuple[int, int, Envelope]] = []
        poison: list[tuple[Record, str]] = []
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for tp, records in batch.items():
            if not records:
                continue
            first[tp.partition] = records[0].offset
            last[tp.partition] = records[-1].offset
            for record in records:
                try:
                    envelopes.append(
                        (
                            tp.partition,
                            record.offset,
                            decode_envelope(record.value),
                        )
                    )
                except (ValueError, TypeError) as exc:
                    poison.append((record, str(exc)))
        for record, reason in poison:
            await self.dead_letter(record, reason)

        start = time.perf_counter()
        async with self._sessions() as session, session.begin():
            stored = await claim_offsets(session, EVENTS_TOPIC, first)
            self.count_replayed(batch, stored)
            fresh = [env for p, off, env in envelopes if off >= stored[p]]
            outcome = await apply_batch(
                session, fresh, partial(plan_batch, tz=self._tz), self._tz, self._clock()
            )
            await store_offsets(
                session, EVENTS_TOPIC, {p: max(stored[p], last[p] + 1) for p in last}
            )
        committed = datetime.now(UTC)
        TXN_S.observe(time.perf_counter() - start)
        BATCH_N.observe(len(envelopes) + len(poison))
        DUPLICATES_N.inc(outcome.duplicates + len(envelopes) - len(fresh))
        by_type: dict[str, int] = defaultdict(int)
        observe = E2E_S.observe
        for env in outcome.new_events:
            by_type[env.event.type] += 1
            observe(max(0.0, (committed - env.received_at).total_seconds()))
        for kind, n in by_type.items():
            PROCESSED.labels(SERVICE, kind).inc(n)
