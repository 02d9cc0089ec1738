"""A Kafka consumer whose offsets live in the service's database (SPEC §2: at-least-once
delivery, exactly-once effect).

Each batch is applied in one transaction together with the partitions' next offsets; on
assignment the consumer seeks to the stored offsets, and a batch that starts beyond them is
refused (a zombie after a rebalance). Offsets are also committed to Kafka afterwards, only so
that lag is visible to the usual tools. Subclasses implement `process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.kafka import log_bounds

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Batch: TypeAlias = dict[TopicPartition, list[Record]]

PROCESSED = Counter(
    "engage_consumer_events_total", "Records applied, by service and type.", ["service", "type"]
)
DUPLICATES = Counter(
    "engage_consumer_duplicates_total", "Records dropped as already processed.", ["service"]
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
REPLAYED = Counter(
    "engage_consumer_replayed_total",
    "Records skipped because the stored offset had passed them: redelivered after a crash, or "
    "a zombie's batch after its partitions moved to another consumer.",
    ["service"],
)
REBASED = Counter(
    "engage_consumer_rebased_total",
    "Partitions found shorter than the stored offset (topic re-created or log lost) and read "
    "again from their beginning.",
    ["service", "topic"],
)
POISON = Counter("engage_consumer_dead_letters_total", "Records sent to the DLQ.", ["service"])
LAG = Gauge(
    "engage_consumer_lag", "Records behind the partition end.", ["service", "topic", "partition"]
)


class OffsetConflict(Exception):
    """Another consumer moved this partition's offset: our batch is stale (a zombie's)."""


async def claim_offsets(
    session: AsyncSession, topic: str, first_offsets: dict[int, int]
) -> dict[int, int]:
    """Lock this batch's partitions' stored offsets; return where each really starts.

    A stored offset beyond the batch's first means someone else processed part of it (we are a
    zombie after a rebalance, or the broker redelivered): records below it are skipped. A stored
    offset behind it means records would be skipped: refuse.
    """
    rows = await session.execute(
        text(
            "SELECT partition, next_offset FROM consumer_offsets "
            "WHERE topic = :topic AND partition = ANY(:parts) ORDER BY partition FOR UPDATE"
        ),
        {"topic": topic, "parts": sorted(first_offsets)},
    )
    stored = {int(r.partition): int(r.next_offset) for r in rows}
    for partition, first in first_offsets.items():
        expected = stored.get(partition, 0)
        if first > expected:
            raise OffsetConflict(
                f"partition {partition}: batch starts at {first}, stored offset is {expected}"
            )
    return {p: stored.get(p, 0) for p in first_offsets}


async def store_offsets(session: AsyncSession, topic: str, next_offsets: dict[int, int]) -> None:
    parts = sorted(next_offsets)
    await session.execute(
        text(
            "INSERT INTO consumer_offsets (topic, partition, next_offset) "
            "SELECT :topic, p, o "
            "FROM unnest(CAST(:parts AS int[]), CAST(:offs AS bigint[])) AS x(p, o) "
            "ON CONFLICT (topic, partition) DO UPDATE SET "
            "next_offset = GREATEST(consumer_offsets.next_offset, excluded.next_offset), "
            "updated_at = now()"
        ),
        {"topic": topic, "parts": parts, "offs": [next_offsets[p] for p in parts]},
    )


async def stored_offsets(session: AsyncSession, topic: str) -> dict[int, int]:
    rows = await session.execute(
        text("SELECT partition, next_offset FROM consumer_offsets WHERE topic = :t"), {"t": topic}
    )
    return {int(r.partition): int(r.next_offset) for r in rows}


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: TransactionalConsumer) -> None:
        self._owner = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._owner.seek_to_stored(assigned)


class TransactionalConsumer:
    """Consume `topic` in group `group_id`; `process` applies a batch in one transaction."""

    def __init__(
        self,
        *,
        bootstrap: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        topic: str,
        dlq_topic: str,
        group_id: str,
        service: str,
        max_records: int = 5000,
    ) -> None:
        self._bootstrap = bootstrap
        self._sessions = sessions
        self._producer = producer
        self.topic = topic
        self._dlq_topic = dlq_topic
        self._group_id = group_id
        self._service = service
        self._max_records = max_records
        self._consumer: AIOKafkaConsumer | None = None
        self._lag_partitions: set[TopicPartition] = set()
        self._suspect: set[TopicPartition] = set()
        self._checked_at = 0.0
        # Zero series from the start, so rate() and alerts see them before the first event.
        POISON.labels(service)
        DUPLICATES.labels(service)
        REPLAYED.labels(service)

    async def process(self, batch: Batch) -> None:
        raise NotImplementedError

    def count_replayed(self, batch: Batch, stored: dict[int, int]) -> None:
        """After `claim_offsets`: how many of the batch's records were applied already. A
        partition whose whole batch was below its stored offset is checked afterwards: a log
        that was re-created would look exactly like that, forever (`check_logs`)."""
        n = 0
        for tp, rs in batch.items():
            below = sum(1 for r in rs if r.offset < stored[tp.partition])
            n += below
            if rs and below == len(rs):
                self._suspect.add(tp)
        if n:
            REPLAYED.labels(self._service).inc(n)

    async def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        assert self._consumer is not None
        if not partitions:
            return
        async with self._sessions() as session:
            stored = await stored_offsets(session, self.topic)
        try:
            bounds = await log_bounds(self._bootstrap, self.topic)
        except (KafkaError, OSError, TimeoutError) as exc:  # checked again on the next replay
            log.warning("partition ends unknown; not checked", extra={"error": repr(exc)})
            bounds = {}
        for tp in partitions:
            offset = stored.get(tp.partition, 0)
            if tp.partition in bounds and offset > bounds[tp.partition][1]:
                offset = await self._rebase(tp, offset, bounds[tp.partition])
            self._consumer.seek(tp, offset)
        log.info(
            "partitions assigned",
            extra={"partitions": sorted(tp.partition for tp in partitions)},
        )

    async def check_logs(self) -> None:
        """For partitions whose records were all below the stored offset: is the log shorter
        than what we applied? (At most every 5 s: a replay after a crash looks the same.)"""
        if not self._suspect or time.monotonic() - self._checked_at < 5:
            return
        self._checked_at = time.monotonic()
        suspects, self._suspect = self._suspect, set()
        assert self._consumer is not None
        try:
            async with self._sessions() as session:
                stored = await stored_offsets(session, self.topic)
            bounds = await log_bounds(self._bootstrap, self.topic)
            for tp in suspects:
                offset = stored.get(tp.partition, 0)
                if (
                    tp.partition in bounds
                    and offset > bounds[tp.partition][1]
                    and tp in self._consumer.assignment()
                ):
                    self._consumer.seek(tp, await self._rebase(tp, offset, bounds[tp.partition]))
        except (KafkaError, OperationalError, DBAPIError, OSError, TimeoutError) as exc:
            log.warning("partition ends not checked", extra={"error": repr(exc)})

    async def _rebase(self, tp: TopicPartition, stored: int, bounds: tuple[int, int]) -> int:
        """The partition's log ends before the offset we stored: the topic was re-created or
        truncated (a broker lost its log). Its records are new to us, so start it from its
        beginning — re-applying is harmless, every consumer being idempotent — rather than
        skip everything up to the old offset in silence."""
        begin, end = bounds
        async with self._sessions() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE consumer_offsets SET next_offset = :begin, updated_at = now() "
                    "WHERE topic = :t AND partition = :p AND next_offset = :stored"
                ),
                {"begin": begin, "t": tp.topic, "p": tp.partition, "stored": stored},
            )
        REBASED.labels(self._service, tp.topic).inc()
        log.error(
            "partition log ends before the stored offset: re-created or truncated; "
            "reading it again from its beginning",
            extra={"topic": tp.topic, "partition": tp.partition, "stored": stored, "end": end,
                   "beginning": begin},
        )  # fmt: skip
        return begin

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
                consumer.subscribe([self.topic], listener=_SeekToStoredOffsets(self))
                await self._loop(consumer)
            except KafkaError as exc:
                log.warning("consumer restarting", extra={"error": repr(exc)})
                await asyncio.sleep(1)
            finally:
                await consumer.stop()

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=self._max_records)
            if not any(batch.values()):
                self._report_lag(consumer)
                continue
            try:
                await self.process(batch)
            except (OffsetConflict, OperationalError, DBAPIError, OSError) as exc:
                log.warning(
                    "batch not applied; resuming from stored offsets",
                    extra={"error": repr(exc)[:500]},
                )
                await self._rewind(consumer)
                continue
            self._report_lag(consumer)
            await self._commit_to_kafka(consumer, batch)
            await self.check_logs()

    async def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        """Back to the stored offsets, waiting for the database if it is down (a restart)."""
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                await self.seek_to_stored(list(consumer.assignment()))
                return
            except (OperationalError, DBAPIError, OSError) as exc:
                log.warning("stored offsets unreadable; retrying", extra={"error": repr(exc)[:300]})
                delay = min(delay * 2, 5.0)

    async def dead_letter(self, record: Record, reason: str) -> None:
        """A record that can never be applied goes to the DLQ with the reason, never skipped."""
        POISON.labels(self._service).inc()
        log.error("poison record sent to the DLQ", extra={"reason": reason[:300]})
        await (
            await self._producer.send(
                self._dlq_topic,
                record.value,
                key=record.key,
                headers=[
                    ("reason", reason.encode()[:1000]),
                    ("source_topic", self.topic.encode()),
                ],
            )
        )

    def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        assigned = set(consumer.assignment())
        for tp in self._lag_partitions - assigned:
            # Another replica owns it now and reports it; a stale value here would double it.
            with contextlib.suppress(KeyError):
                LAG.remove(self._service, tp.topic, str(tp.partition))
        self._lag_partitions = assigned
        for tp in assigned:
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = consumer._subscription.subscription.assignment.state_value(tp).position
            except AttributeError:
                continue
            if position is not None:
                LAG.labels(self._service, tp.topic, str(tp.partition)).set(max(0, high - position))

    async def _commit_to_kafka(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs}
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # only for visibility; the database holds the truth
            log.info("kafka offset commit skipped", extra={"error": repr(exc)})

    async def end_offsets(self) -> dict[int, int] | None:
        """The topic's partition ends (exact, see shared.kafka.log_bounds), or None while the
        consumer is not running."""
        if self._consumer is None:
            return None
        bounds = await log_bounds(self._bootstrap, self.topic)
        return {p: end for p, (_, end) in bounds.items()} or None
