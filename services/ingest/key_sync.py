"""Publishes ingest's key table to `engage.keys.v1` so the other services can authenticate."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest.store.keys import key_records
from shared.kafka import ensure_topics, make_producer
from shared.key_directory import publish_keys
from shared.topics import KEYS_TOPIC

log = logging.getLogger(__name__)


async def publish_all_keys(sessions: async_sessionmaker[AsyncSession], bootstrap: str) -> int:
    async with sessions() as session:
        records = await key_records(session)
    await ensure_topics(bootstrap, {KEYS_TOPIC: 1}, compacted=frozenset({KEYS_TOPIC}))
    producer = make_producer(bootstrap, "ingest-keys")
    await producer.start()
    try:
        await publish_keys(producer, records)
    finally:
        await producer.stop()
    return len(records)


async def keep_keys_published(
    sessions: async_sessionmaker[AsyncSession], bootstrap: str, every_s: float = 60.0
) -> None:
    """Republish every key now and then: a broker that lost its topics gets them back."""
    while True:
        try:
            await publish_all_keys(sessions, bootstrap)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("could not publish keys; retrying", extra={"error": repr(exc)})
            await asyncio.sleep(2)
            continue
        await asyncio.sleep(every_s)
