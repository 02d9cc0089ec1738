"""The rewards consumer of engage.metrics.v1: store the latest values, fire real-time
thresholds, revoke grants of dissolved groups — with the offsets, in one transaction per batch.

A redelivered metric record re-evaluates the same values; the ledger's unique key makes the
second grant impossible, so the effect is exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.domain.lifecycle import ACTIVE
from services.rewards.domain.rules import ThresholdRule
from services.rewards.store import snapshots
from services.rewards.store.campaigns import live_campaigns
from services.rewards.store.evaluate import threshold_decisions
from services.rewards.store.ledger import Recorded, record_grants, revoke_for_dissolved_groups
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

METRICS_TOPIC = "engage.metrics.v1"
DLQ_TOPIC = "engage.metrics.dlq"
SERVICE = "rewards"


class MetricsConsumer(TransactionalConsumer):
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
            dlq_topic=DLQ_TOPIC,
            group_id=group_id,
            service=SERVICE,
            max_records=max_records,
        )
        self._tz = tz
        self._clock = clock

    async def process(self, batch: Batch) -> None:
        first = {tp.partition: rs[0].offset for tp, rs in batch.items() if rs}
        last = {tp.partition: rs[-1].offset for tp, rs in batch.items() if rs}
        start = time.perf_counter()
        recorded: list[Recorded] = []
        async with self._sessions() as session, session.begin():
            stored = await claim_offsets(session, METRICS_TOPIC, first)
            self.count_replayed(batch, stored)
            fresh = snapshots.SnapshotBatch()
            poison: list[tuple[Record, str]] = []
            for tp, records in batch.items():
                for record in records:
                    if record.offset < stored[tp.partition]:
                        continue
                    try:
                        fresh.add(record.value)
                    except snapshots.MalformedMetric as exc:
                        poison.append((record, str(exc)))
            for record, reason in poison:
                await self.dead_letter(record, reason)
            await snapshots.store(session, fresh)
            now = self._clock()
            for campaign in await live_campaigns(session):
                if campaign.state != ACTIVE:
                    continue
                for rule in campaign.definition.rules:
                    if not isinstance(rule, ThresholdRule):
                        continue
                    decisions = await threshold_decisions(
                        session,
                        campaign.campaign_id,
                        campaign.definition,
                        rule,
                        fresh.user_days,
                        fresh.user_months,
                        fresh.groups.values(),
                        self._tz,
                    )
                    recorded.append(
                        await record_grants(
                            session,
                            campaign.campaign_id,
                            campaign.version,
                            decisions,
                            campaign.definition.name,
                        )
                    )
            dissolved = {
                g.group_id: g.dissolved_at
                for g in fresh.groups.values()
                if g.dissolved_at is not None
            }
            revoked = await revoke_for_dissolved_groups(session, dissolved, now, self._tz)
            await store_offsets(
                session, METRICS_TOPIC, {p: max(stored[p], last[p] + 1) for p in last}
            )
        TXN.labels(SERVICE).observe(time.perf_counter() - start)
        BATCH.labels(SERVICE).observe(sum(len(rs) for rs in batch.values()))
        for r in recorded:
            r.count()
        Recorded(rows=revoked).count()
        for kind, n in (
            ("user_day", len(fresh.user_days)),
            ("user_month", len(fresh.user_months)),
            ("group_month", len(fresh.groups)),
        ):
            PROCESSED.labels(SERVICE, kind).inc(n)
