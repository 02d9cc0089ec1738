"""The rewards consumer of engage.metrics.v1: store the latest values, fire real-time
thresholds, revoke grants of dissolved groups — with the offsets, in one transaction per batch.

A redelivered metric record re-evaluates the same values; the ledger's unique key makes the
second grant impossible, so the effect is exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
from shared.consumer import PROCESSED, Record, TransactionalConsumer
from shared.topics import METRICS_DLQ, METRICS_TOPIC

SERVICE = "rewards"


@dataclass(slots=True)
class Applied:
    """What one batch of metric records did: fresh values stored, grants recorded, revoked."""

    values: snapshots.SnapshotBatch
    recorded: list[Recorded]
    revoked: Recorded


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
        fresh = snapshots.SnapshotBatch.of(values)
        recorded: list[Recorded] = []
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
            g.group_id: g.dissolved_at for g in fresh.groups.values() if g.dissolved_at is not None
        }
        revoked = await revoke_for_dissolved_groups(session, dissolved, now, self._tz)
        return Applied(fresh, recorded, Recorded(rows=revoked))

    def after_commit(self, result: Applied, replayed: int) -> None:
        for r in result.recorded:
            r.count()
        result.revoked.count()
        for kind, n in (
            ("user_day", len(result.values.user_days)),
            ("user_month", len(result.values.user_months)),
            ("group_month", len(result.values.groups)),
        ):
            PROCESSED.labels(SERVICE, kind).inc(n)
