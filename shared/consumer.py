"""A Kafka consumer whose offsets live in the service's database (SPEC §2: at-least-once
delivery, exactly-once effect), written once for every service as a template.

A service says how to `decode` one record and how to `apply` decoded values in a transaction;
the template does the rest. Each batch is applied in one transaction together with the
partitions' next offsets; on assignment the consumer seeks to the stored offsets, and a batch
that starts beyond them is refused (a zombie after a rebalance). Offsets are also committed to
Kafka afterwards, only so that lag is visible to the usual tools.

Fault isolation (SPEC §16): a record that cannot be decoded, or whose batch fails for a reason
that will not go away on retry (a data error, a constraint violation, an exception from the
domain), is found by bisecting the batch — each part in its own transaction — and sent to the
service's DLQ with its reason, partition and offset; every other record is applied exactly once
and the partition moves on. Transient faults (connection loss, restarts, serialization
failures, a zombie's stale batch) are retried from the stored offsets as before. An error of
unknown kind is retried three times before the batch is bisected, and a bisection that would
dead-letter more than `max_dead_letters` records stops instead — a code bug stalls the
partition with an alert rather than emptying it into the DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Generic, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.failures import (
    DATA,
    DATA_EXCEPTIONS,
    TRANSIENT,
    UNKNOWN,
    UNKNOWN_RETRIES,
    Transient,
    failure_kind,
    failure_reason,
)
from shared.kafka import log_bounds

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Batch: TypeAlias = dict[TopicPartition, list[Record]]
T = TypeVar("T")  # a decoded record
R = TypeVar("R")  # what `apply` returns to `after_commit`

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
FAILED_BATCHES = Counter(
    "engage_consumer_failed_batches_total",
    "Batches (or parts of one, while isolating) whose transaction failed, by kind of failure: "
    "transient (retried), data (records isolated), unknown (retried, then isolated).",
    ["service", "kind"],
)
STALLED = Gauge(
    "engage_consumer_stalled",
    "1 while a consumer refuses to dead-letter more records of a failing batch (a bug?) and "
    "retries it instead.",
    ["service"],
)
LAG = Gauge(
    "engage_consumer_lag", "Records behind the partition end.", ["service", "topic", "partition"]
)


class OffsetConflict(Transient):
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
    def __init__(self, consumer: TransactionalConsumer[Any, Any]) -> None:
        self._owner = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._owner.seek_to_stored(assigned)


class Stalled(Exception):
    """Bisection would dead-letter too many records: probably a bug, not bad records."""


# One consumed record: (partition, record, decoded value or None, why it could not be decoded).
Item: TypeAlias = "tuple[int, Record, T | None, str | None]"


class TransactionalConsumer(Generic[T, R]):
    """Consume `topic` in group `group_id`: `decode` each record, `apply` a batch of values in
    one transaction with the offsets, then `after_commit` (metrics)."""

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
        max_dead_letters: int = 20,
    ) -> None:
        self._bootstrap = bootstrap
        self._sessions = sessions
        self._producer = producer
        self.topic = topic
        self._dlq_topic = dlq_topic
        self._group_id = group_id
        self._service = service
        self._max_records = max_records
        self._max_dead_letters = max_dead_letters
        self._consumer: AIOKafkaConsumer | None = None
        self._lag_partitions: set[TopicPartition] = set()
        self._suspect: set[TopicPartition] = set()
        self._checked_at = 0.0
        self._failures = 0  # consecutive failed attempts at the current batch
        self._stalled = False  # a bisection stopped at max_dead_letters: retry, never isolate
        self._txn = TXN.labels(service)
        self._batch = BATCH.labels(service)
        # Zero series from the start, so rate() and alerts see them before the first event.
        POISON.labels(service)
        DUPLICATES.labels(service)
        REPLAYED.labels(service)
        STALLED.labels(service).set(0)
        for kind in (TRANSIENT, DATA, UNKNOWN):
            FAILED_BATCHES.labels(service, kind)

    # -- what a service provides -------------------------------------------------------------

    def decode(self, record: Record) -> T:
        """One record's value; raise ValueError (or TypeError/KeyError) if it is malformed."""
        raise NotImplementedError

    async def apply(self, session: AsyncSession, values: list[T]) -> R:
        """Apply fresh decoded values inside the batch's transaction; flush, never commit."""
        raise NotImplementedError

    def after_commit(self, result: R, replayed: int) -> None:
        """After the transaction committed: count what happened (metrics only)."""
        return None

    async def prepare(self, values: list[T]) -> None:
        """Before a chunk's transaction, outside it (e.g. DDL the chunk needs); idempotent."""
        return None

    # -- the template ------------------------------------------------------------------------

    async def process(self, batch: Batch) -> None:
        """Apply one consumed batch exactly once, isolating the records that cannot be applied.

        Raises for a transient fault (the caller rewinds to the stored offsets and retries)."""
        items = self._decode(batch)
        try:
            await self._apply_chunk(items)
        except Exception as exc:
            kind = failure_kind(exc)
            FAILED_BATCHES.labels(self._service, kind).inc()
            if kind == TRANSIENT or self._stalled:
                raise
            if kind == UNKNOWN and self._failures + 1 < UNKNOWN_RETRIES:
                raise
            await self._isolate(items, exc)
        self._stalled = False
        STALLED.labels(self._service).set(0)

    def _decode(self, batch: Batch) -> list[Item[T]]:
        items: list[Item[T]] = []
        decode = self.decode
        for tp, records in batch.items():
            p = tp.partition
            for record in records:
                try:
                    items.append((p, record, decode(record), None))
                except DATA_EXCEPTIONS as exc:
                    items.append((p, record, None, f"undecodable: {failure_reason(exc)}"))
        return items

    async def _apply_chunk(self, items: list[Item[T]]) -> None:
        """One transaction: claim the partitions' offsets, dead-letter undecodable records,
        apply the fresh values, store the next offsets."""
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for p, record, _, _ in items:
            first.setdefault(p, record.offset)
            last[p] = record.offset
        started = time.perf_counter()
        await self.prepare([value for _, _, value, _ in items if value is not None])
        async with self._sessions() as session, session.begin():
            stored = await claim_offsets(session, self.topic, first)
            replayed = self._count_replayed(items, stored)
            fresh: list[T] = []
            for p, record, value, unreadable in items:
                if record.offset < stored[p]:
                    continue
                if unreadable is not None:
                    await self.dead_letter(record, unreadable, p)
                elif value is not None:
                    fresh.append(value)
            result = await self.apply(session, fresh)
            await store_offsets(session, self.topic, {p: max(stored[p], last[p] + 1) for p in last})
        self._txn.observe(time.perf_counter() - started)
        self._batch.observe(len(items))
        self.after_commit(result, replayed)

    async def _isolate(self, items: list[Item[T]], exc: Exception) -> None:
        """Bisect `items` (which failed with `exc`): apply each half in its own transaction, in
        order, so that every partition's offsets stay contiguous; a single record that fails on
        its own is dead-lettered and its offset passed."""
        dead = 0
        log.warning(
            "batch failed; isolating the records that cannot be applied",
            extra={"records": len(items), "error": failure_reason(exc)[:300]},
        )

        async def split(chunk: list[Item[T]], error: Exception) -> None:
            nonlocal dead
            if len(chunk) == 1:
                if dead >= self._max_dead_letters:
                    self._stalled = True
                    STALLED.labels(self._service).set(1)
                    raise Stalled(
                        f"more than {self._max_dead_letters} records of one batch fail on their "
                        f"own; not dead-lettering more (a bug?): {failure_reason(error)}"
                    ) from error
                await self._skip(chunk[0], failure_reason(error))
                dead += 1
                return
            mid = len(chunk) // 2
            for half in (chunk[:mid], chunk[mid:]):
                try:
                    await self._apply_chunk(half)
                except Exception as half_error:
                    if failure_kind(half_error) == TRANSIENT:
                        raise
                    await split(half, half_error)

        await split(items, exc)

    async def _skip(self, item: Item[T], reason: str) -> None:
        """Dead-letter one record and move its partition past it, in one transaction."""
        p, record, _, _ = item
        async with self._sessions() as session, session.begin():
            stored = await claim_offsets(session, self.topic, {p: record.offset})
            if record.offset >= stored[p]:
                await self.dead_letter(record, reason, p)
                await store_offsets(session, self.topic, {p: record.offset + 1})

    def _count_replayed(self, items: list[Item[T]], stored: dict[int, int]) -> int:
        """After `claim_offsets`: how many of the records were applied already. A partition
        whose every record was below its stored offset is checked afterwards: a log that was
        re-created would look exactly like that, forever (`check_logs`)."""
        below: dict[int, int] = {}
        total: dict[int, int] = {}
        for p, record, _, _ in items:
            total[p] = total.get(p, 0) + 1
            if record.offset < stored[p]:
                below[p] = below.get(p, 0) + 1
        for p, n in below.items():
            if n == total[p]:
                self._suspect.add(TopicPartition(self.topic, p))
        n = sum(below.values())
        if n:
            REPLAYED.labels(self._service).inc(n)
        return n

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
            except Exception as exc:
                self._failures += 1
                kind = failure_kind(exc)
                (log.warning if kind == TRANSIENT else log.error)(
                    "batch not applied; resuming from stored offsets",
                    extra={
                        "error": failure_reason(exc)[:500],
                        "kind": kind,
                        "attempt": self._failures,
                    },
                )
                await self._rewind(consumer, min(0.5 * 2 ** (self._failures - 1), 30.0))
                continue
            self._failures = 0
            self._report_lag(consumer)
            await self._commit_to_kafka(consumer, batch)
            await self.check_logs()

    async def _rewind(self, consumer: AIOKafkaConsumer, delay: float = 0.5) -> None:
        """Back to the stored offsets, waiting for the database if it is down (a restart)."""
        while True:
            await asyncio.sleep(delay)
            try:
                await self.seek_to_stored(list(consumer.assignment()))
                return
            except (OperationalError, DBAPIError, OSError) as exc:
                log.warning("stored offsets unreadable; retrying", extra={"error": repr(exc)[:300]})
                delay = min(delay * 2, 5.0)

    async def dead_letter(self, record: Record, reason: str, partition: int) -> None:
        """A record that can never be applied goes to the DLQ with the reason and where it came
        from (`engage dlq list` shows it, `engage dlq replay` puts it back), never skipped."""
        POISON.labels(self._service).inc()
        log.error(
            "record sent to the DLQ",
            extra={"reason": reason[:300], "partition": partition, "offset": record.offset},
        )
        await (
            await self._producer.send(
                self._dlq_topic,
                record.value,
                key=record.key,
                headers=[
                    ("reason", reason.encode()[:1000]),
                    ("service", self._service.encode()),
                    ("group", self._group_id.encode()),
                    ("source_topic", self.topic.encode()),
                    ("source_partition", str(partition).encode()),
                    ("source_offset", str(record.offset).encode()),
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
