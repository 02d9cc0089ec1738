"""Topic ends and stored offsets: shared.kafka.end_offsets is exact on the embedded broker,
whose own ListOffsets answer stops at the last record batch's first offset (Tansu 0.6); a
consumer whose stored offsets lie beyond a partition's end reads that partition again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import MetaData, text

from engage.progress import stored_offsets, wait_processed
from engage.runtime import EmbeddedBroker
from engage.stack import Stack
from shared.contract import encode_envelope
from shared.db import make_engine, prepare_schema
from shared.kafka import end_offsets, ensure_topics
from shared.topics import EVENTS_TOPIC
from tests.builders import make_event

SCORING_MIGRATIONS = (
    Path(__file__).resolve().parents[2] / "services" / "scoring" / "store" / "migrations"
)

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


async def test_a_partition_shorter_than_the_stored_offset_is_read_again(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A topic re-created under a running deployment (or a broker that lost its log): the
    stored offsets lie beyond the partitions' ends. Scoring must read the new records from the
    beginning — not skip everything below the old offsets in silence."""
    assert stack.database_url
    own = Stack(
        var_dir=Path(tmp_path_factory.mktemp("rebase")),
        fixed_ports=False,
        database_url=stack.database_url,
    ).start_infra()
    schema = "scoring_rebase"
    engine = make_engine(stack.database_url, schema, pool_size=1)
    try:
        await prepare_schema(engine, SCORING_MIGRATIONS, schema, MetaData(), True)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO consumer_offsets (topic, partition, next_offset) "
                    "SELECT :t, p, 1000000 FROM generate_series(0, 5) AS p"
                ),
                {"t": EVENTS_TOPIC},
            )
        assert own.kafka_bootstrap
        await ensure_topics(own.kafka_bootstrap, {EVENTS_TOPIC: 6})
        events = [make_event() for _ in range(300)]
        producer = AIOKafkaProducer(bootstrap_servers=own.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            received = datetime.now(UTC).isoformat()
            for e in events:
                await producer.send(
                    EVENTS_TOPIC,
                    encode_envelope(e, received, "test", "platform"),
                    key=e["user_id"].encode(),
                )
            await producer.flush()
        finally:
            await producer.stop()

        scoring = own.start_service(
            "scoring",
            instance="-rebase",
            env={"SCORING_SCHEMA_NAME": schema, "SCORING_CONSUMER_GROUP": schema},
        )
        await wait_processed(stack.database_url, len(events), schema, timeout_s=60)
        assert scoring.log_tail(1000).count("re-created or truncated") >= 1
        stored = await stored_offsets(stack.database_url, schema, EVENTS_TOPIC)
        ends = await end_offsets(own.kafka_bootstrap, EVENTS_TOPIC)
        assert stored == ends, (stored, ends)
    finally:
        await engine.dispose()
        own.stop()
