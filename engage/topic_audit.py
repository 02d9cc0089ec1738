"""Reads a topic end to end: how the demo and tests prove what arrived and that nothing is lost."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared.kafka import end_offsets


@dataclass
class TopicTally:
    records: int = 0
    event_ids: set[str] = field(default_factory=set)
    by_type: Counter[str] = field(default_factory=Counter)  # distinct events per type
    keyed_by_user: bool = True
    payloads: dict[str, dict[str, object]] = field(default_factory=dict)


async def read_topic(
    bootstrap: str,
    topic: str,
    on_record: Callable[[ConsumerRecord[bytes, bytes]], None],
    timeout_s: float = 300.0,
) -> None:
    """Feed every record of every partition, from the beginning to the current end offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        await consumer.topics()  # fresh metadata: the topic may have been (re)created just now
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await end_offsets(bootstrap, topic)  # the broker's own answer can fall short
        end = {tp: ends.get(tp.partition, 0) for tp in partitions}
        remaining = {tp for tp in partitions if end[tp] > 0}
        deadline = asyncio.get_running_loop().time() + timeout_s
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{topic}: partitions {remaining} not read to the end")
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    on_record(record)
                if records and records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
    finally:
        await asyncio.sleep(0)  # aiokafka: stop() right after start() trips on an unstarted task
        await consumer.stop()


async def tally_topic(
    bootstrap: str, topic: str, keep_payloads: bool = False, timeout_s: float = 300.0
) -> TopicTally:
    """Count an event topic's records, distinct event ids and types; check the keys."""
    tally = TopicTally()

    def count(record: ConsumerRecord[bytes, bytes]) -> None:
        event = orjson.loads(record.value)
        tally.records += 1
        if record.key != str(event.get("user_id")).encode():
            tally.keyed_by_user = False
        if event["event_id"] not in tally.event_ids:
            tally.event_ids.add(event["event_id"])
            tally.by_type[event["type"]] += 1
        if keep_payloads:
            tally.payloads[event["event_id"]] = event

    await read_topic(bootstrap, topic, count, timeout_s)
    return tally


async def latest_values(bootstrap: str, topic: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """A changelog topic as a table: the last value of each key."""
    table: dict[str, Any] = {}

    def keep(record: ConsumerRecord[bytes, bytes]) -> None:
        table[(record.key or b"").decode()] = orjson.loads(record.value)

    await read_topic(bootstrap, topic, keep, timeout_s)
    return table
