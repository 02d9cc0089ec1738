"""The scoring consumer: decode → validate → plan (domain) → apply (store) → commit, per batch.

Offsets live in the database, committed in the same transaction as the results and the
processed-event ledger; on assignment the consumer seeks to them. Offsets are also committed to
Kafka afterwards, only so that lag is visible to the usual tools.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TypeAlias
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.domain.batch import plan_batch
from services.scoring.store.apply import OffsetConflict, apply_batch, claim_offsets, store_offsets
from shared.contract import EVENTS_TOPIC, Envelope, decode_envelope

log = logging.getLogger(__name__)
DLQ_TOPIC = "engage.events.dlq"

PROCESSED = Counter(
    "engage_consumer_events_total", "Events applied, by service and type.", ["service", "type"]
)
DUPLICATES = Counter(
    "engage_consumer_duplicates_total", "Events dropped as already processed.", ["service"]
)
POISON = Counter("engage_consumer_dead_letters_total", "Records sent to the DLQ.", ["service"])
LAG = Gauge(
    "engage_consumer_lag", "Records behind the partition end.", ["service", "topic", "partition"]
)
E2E = Histogram(
    "engage_end_to_end_seconds",
    "received_at → committed by this service.",
    ["service"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400),
)
BATCH = Histogram(
    "engage_consumer_batch_records",
    "Records per consumed batch.",
    ["service"],
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
)
TXN = Histogram(
    "engage_consumer_transaction_seconds",
    "Database transaction time per batch.",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SERVICE = "scoring"
# Children looked up once: `.labels()` per event costs more than the observation itself.
E2E_S, TXN_S, BATCH_N, DUPLICATES_N = (
    E2E.labels(SERVICE),
    TXN.labels(SERVICE),
    BATCH.labels(SERVICE),
    DUPLICATES.labels(SERVICE),
)
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: EventsConsumer) -> None:
        self._owner = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._owner.seek_to_stored(assigned)


class EventsConsumer:
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
        self._bootstrap = bootstrap
        self._sessions = sessions
        self._producer = producer
        self._tz = tz
        self._group_id = group_id
        self._max_records = max_records
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None

    async def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        assert self._consumer is not None
        if not partitions:
            return
        async with self._sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT partition, next_offset FROM consumer_offsets "
                    "WHERE topic = :t AND partition = ANY(:p)"
                ),
                {"t": EVENTS_TOPIC, "p": [tp.partition for tp in partitions]},
            )
            stored = {int(r.partition): int(r.next_offset) for r in rows}
        for tp in partitions:
            self._consumer.seek(tp, stored.get(tp.partition, 0))
        log.info(
            "partitions assigned",
            extra={
                "partitions": sorted(
                    stored | {tp.partition: 0 for tp in partitions if tp.partition not in stored}
                )
            },
        )

    async def run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=self._group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_interval_ms=30_000,
                session_timeout_ms=10_000,
                heartbeat_interval_ms=2_000,
                # The broker holds a (re)join for this long; members rejoin at once (revoking
                # needs no work here: offsets are in the database), so 3 s is plenty.
                rebalance_timeout_ms=3_000,
                fetch_max_bytes=16 * 1024 * 1024,
                max_partition_fetch_bytes=4 * 1024 * 1024,
            )
            self._consumer = consumer
            try:
                await consumer.start()
                consumer.subscribe([EVENTS_TOPIC], listener=_SeekToStoredOffsets(self))
                await self._loop(consumer)
            except KafkaError as exc:
                log.warning("consumer restarting", extra={"error": repr(exc)})
                await asyncio.sleep(1)
            finally:
                await consumer.stop()

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=self._max_records)
            records = [r for rs in batch.values() for r in rs]
            if not records:
                self._report_lag(consumer)
                continue
            try:
                await self._process(batch)
            except (OffsetConflict, OperationalError, DBAPIError, OSError) as exc:
                log.warning(
                    "batch not applied; resuming from stored offsets",
                    extra={"error": repr(exc)[:500]},
                )
                await asyncio.sleep(0.5)
                await self.seek_to_stored(list(consumer.assignment()))
                continue
            self._report_lag(consumer)
            await self._commit_to_kafka(consumer, batch)

    async def _process(self, batch: dict[TopicPartition, list[Record]]) -> None:
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
            await self._dead_letter(record, reason)

        start = time.perf_counter()
        async with self._sessions() as session, session.begin():
            stored = await claim_offsets(session, EVENTS_TOPIC, first)
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

    async def _dead_letter(self, record: Record, reason: str) -> None:
        POISON.labels(SERVICE).inc()
        log.error("poison record sent to the DLQ", extra={"reason": reason[:300]})
        await (
            await self._producer.send(
                DLQ_TOPIC,
                record.value,
                key=record.key,
                headers=[
                    ("reason", reason.encode()[:1000]),
                    ("source_topic", EVENTS_TOPIC.encode()),
                ],
            )
        )

    def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = consumer._subscription.subscription.assignment.state_value(tp).position
            except AttributeError:
                continue
            if position is not None:
                LAG.labels(SERVICE, tp.topic, str(tp.partition)).set(max(0, high - position))

    async def _commit_to_kafka(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Record]]
    ) -> None:
        offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs}
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # only for visibility; the database holds the truth
            log.info("kafka offset commit skipped", extra={"error": repr(exc)})
