"""Dead letters: list what a service could not apply, and put a record back after a fix.

Every consumer sends a record it cannot apply to its service's DLQ topic with headers saying
why and where it came from (shared/consumer.py). `engage dlq list` reads them; `engage dlq
replay` produces one again onto its source topic — the consumers are idempotent, so a record
that was applied after all is counted once.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from engage.topic_audit import read_topic
from shared.topics import DLQ_TOPICS


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    service: str
    group: str
    reason: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    key: bytes | None
    value: bytes

    @property
    def ref(self) -> str:
        """How `engage dlq replay` names this record: DLQ topic, partition and offset."""
        return f"{self.dlq_topic}:{self.dlq_partition}:{self.dlq_offset}"


def _int(text: str) -> int | None:
    return int(text) if text.lstrip("-").isdigit() else None


def dead_letter_of(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
    return DeadLetter(
        dlq_topic=record.topic,
        dlq_partition=record.partition,
        dlq_offset=record.offset,
        service=headers.get("service", ""),
        group=headers.get("group", ""),
        reason=headers.get("reason", ""),
        source_topic=headers.get("source_topic", ""),
        source_partition=_int(headers.get("source_partition", "")),
        source_offset=_int(headers.get("source_offset", "")),
        key=record.key,
        value=record.value or b"",
    )


async def dead_letters(bootstrap: str, topics: tuple[str, ...] = DLQ_TOPICS) -> list[DeadLetter]:
    """Every record on the DLQ topics, oldest first per partition."""
    found: list[DeadLetter] = []
    for topic in topics:
        await read_topic(bootstrap, topic, lambda r: found.append(dead_letter_of(r)))
    return found


async def replay(bootstrap: str, ref: str) -> DeadLetter:
    """Produce the dead letter named `ref` (topic:partition:offset) onto its source topic."""
    parts = ref.split(":")
    if len(parts) < 3 or not parts[-1].isdigit() or not parts[-2].isdigit():
        raise ValueError(
            f"{ref!r}: expected DLQ_TOPIC:PARTITION:OFFSET, as `engage dlq list` shows"
        )
    topic = ":".join(parts[:-2])
    wanted = (topic, int(parts[-2]), int(parts[-1]))
    match = [
        d
        for d in await dead_letters(bootstrap, (topic,))
        if (d.dlq_topic, d.dlq_partition, d.dlq_offset) == wanted
    ]
    if not match:
        raise LookupError(f"no dead letter {ref}")
    letter = match[0]
    if not letter.source_topic:
        raise ValueError(f"{ref}: the record does not say which topic it came from")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(letter.source_topic, letter.value, key=letter.key)
    finally:
        await producer.stop()
    return letter
