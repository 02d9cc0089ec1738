"""Kafka plumbing on aiokafka: topic creation and a producer that waits for `acks=all`.

The embedded broker supports neither idempotent nor transactional producers (FIELD-NOTES), and
Kafka transactions would not cover a database sink anyway: delivery is at-least-once and every
consumer is idempotent (SPEC §2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


def _survive_uvloop_closed_transports() -> None:
    """Under uvloop, writing to a transport the peer has reset raises RuntimeError, where
    asyncio's loop raises nothing or OSError; aiokafka catches only OSError
    (aio-libs/aiokafka#1038, open), so the error kills the producer's sender or the consumer's
    fetcher task for good and the client silently stops. Found by the chaos suite (connections
    reset by the fault proxy). Turn it into the connection error aiokafka handles."""
    original = AIOKafkaConnection.send
    if getattr(original, "_engage_patched", False):
        return

    def send(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
        try:
            return original(self, request, expect_response)
        except KafkaError:  # aiokafka's own errors are RuntimeErrors too: not ours to change
            raise
        except RuntimeError as err:
            self.close(reason=CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(f"connection broken: {err}") from err

    send._engage_patched = True  # type: ignore[attr-defined]
    AIOKafkaConnection.send = send


_survive_uvloop_closed_transports()


COMPACTED = {"cleanup.policy": "compact"}


async def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    replication: int = 1,
    timeout_s: float = 30.0,
    compacted: frozenset[str] = frozenset(),
) -> None:
    """Create the named topics (name → partitions) if they do not exist yet."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    name,
                    partitions,
                    replication,
                    topic_configs=COMPACTED if name in compacted else None,
                )
                for name, partitions in topics.items()
                if name not in existing
            ]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # another replica won
                    await admin.create_topics(missing)
            # A broker may have auto-created a topic with fewer partitions (Tansu does after a
            # restart); records keyed to the missing partitions would be lost, so add them.
            short: dict[str, NewPartitions] = {}
            for desc in await admin.describe_topics(list(topics)):
                have = len(desc.get("partitions") or [])
                if desc.get("error_code", 0) == 0 and have < topics[desc["topic"]]:
                    short[desc["topic"]] = NewPartitions(topics[desc["topic"]])
            if short:
                log.warning("adding partitions", extra={"topics": sorted(short)})
                await admin.create_partitions(short)
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


def make_producer(
    bootstrap: str, client_id: str, request_timeout_ms: int = 5000
) -> AIOKafkaProducer:
    """A producer whose sends complete only once every in-sync replica has the record."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        # No linger: records accumulate on their own while a produce request is in flight, and
        # measured here linger_ms=2 cut a 32-writer single-record load from 30k to 8k msg/s.
        linger_ms=0,
        max_batch_size=256 * 1024,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=100,
        metadata_max_age_ms=30_000,
    )


def producer_ready(producer: AIOKafkaProducer) -> Callable[[], Awaitable[str | None]]:
    """A readiness check: None when the broker answers a metadata request, else the reason."""

    async def check() -> str | None:
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=2)
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            return f"kafka: {type(exc).__name__}"
        return None

    return check


async def end_offsets(bootstrap: str, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """Each partition's end (the offset the next record will get), exactly (`log_bounds`)."""
    return {p: end for p, (_, end) in (await log_bounds(bootstrap, topic, timeout_s)).items()}


async def log_bounds(
    bootstrap: str, topic: str, timeout_s: float = 10.0
) -> dict[int, tuple[int, int]]:
    """Each partition's (beginning, end): its first retained offset and the offset the next
    record will get, exactly.

    Tansu 0.6 answers ListOffsets(latest) with the base offset of a partition's last record
    batch + 1, not its end (measured: 100 records produced as one batch → 1), so a plain
    `end_offsets` under-reports by the last batch, and "consumed up to the end" would be
    declared too early. Reading from that offset to the last record gives the true end; against
    a broker that answers correctly it costs one short fetch per partition.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return {}
        reported = await consumer.end_offsets(tps)
        beginnings = await consumer.beginning_offsets(tps)
        out = {tp.partition: int(reported[tp]) for tp in tps}
        consumer.assign(tps)
        pending = {tp for tp in tps if reported[tp] > 0}
        for tp in pending:
            consumer.seek(tp, reported[tp] - 1)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=200)
            late = asyncio.get_running_loop().time() > deadline
            for tp in list(pending):
                # A fetch returns whole record batches: the first answer from inside the last
                # batch reaches its end (stopping there keeps this short under live traffic).
                if records := batch.get(tp):
                    out[tp.partition] = max(out[tp.partition], records[-1].offset + 1)
                    pending.discard(tp)
                elif late:  # nothing there any more (retention): keep the broker's answer
                    pending.discard(tp)
        return {tp.partition: (int(beginnings[tp]), out[tp.partition]) for tp in tps}
    finally:
        await asyncio.sleep(0)  # aiokafka: stop() right after start() trips on an unstarted task
        await consumer.stop()
