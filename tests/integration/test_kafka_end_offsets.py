"""shared.kafka.end_offsets is exact on the embedded broker, whose own ListOffsets answer
stops at the last record batch's first offset (Tansu 0.6)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engage.runtime import EmbeddedBroker
from shared.kafka import end_offsets, ensure_topics

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker().start()
    try:
        yield b
    finally:
        b.stop()


async def _produce(bootstrap: str, topic: str, per_partition: list[int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=100)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, b"x", partition=p)
            for p, n in enumerate(per_partition)
            for _ in range(n)
        ]
        for f in futures:
            await f
    finally:
        await producer.stop()


async def test_end_offsets_count_every_record_of_the_last_batch(broker: EmbeddedBroker) -> None:
    await ensure_topics(broker.bootstrap, {"offsets.test": 3})
    await _produce(broker.bootstrap, "offsets.test", [100, 1, 0])
    await _produce(broker.bootstrap, "offsets.test", [50, 0, 0])

    assert await end_offsets(broker.bootstrap, "offsets.test") == {0: 150, 1: 1, 2: 0}

    # The premise: the broker's own answer falls short when the last batch holds many records.
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition("offsets.test", 0)
        raw = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    assert raw < 150, "the broker answers exactly now: the workaround can go"


async def test_an_unknown_topic_has_no_partitions(broker: EmbeddedBroker) -> None:
    assert await end_offsets(broker.bootstrap, "no.such.topic") == {}
