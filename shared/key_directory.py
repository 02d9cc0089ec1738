"""API keys for services that do not own them: a directory read from `engage.keys.v1`.

Ingest owns the key table (SPEC §2) and publishes each key's hash, roles, event types (when the
key is narrowed) and revocation to this compacted topic (never a secret), and republishes every
key at start-up; the other services read the topic from the beginning into memory, so no
service reads another's tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from shared.auth import Principal, Role
from shared.topics import KEYS_TOPIC

log = logging.getLogger(__name__)


def key_record(key_hash: str, principal: Principal, revoked: bool) -> bytes:
    return orjson.dumps(
        {
            "key_hash": key_hash,
            "key_id": principal.key_id,
            "name": principal.name,
            "roles": sorted(principal.roles),
            "rate_per_s": principal.rate_per_s,
            # null = every type its roles allow; a list = only these (a narrowed key).
            "event_types": None if principal.event_types is None else sorted(principal.event_types),
            "team": principal.team,
            "revoked": revoked,
        }
    )


async def publish_keys(
    producer: AIOKafkaProducer, records: Iterable[tuple[str, Principal, bool]]
) -> None:
    futures = [
        await producer.send(KEYS_TOPIC, key_record(h, p, revoked), key=h.encode())
        for h, p, revoked in records
    ]
    for future in futures:
        await future


class KeyDirectory:
    """Follows `engage.keys.v1` from the beginning; `principals()` is the current view."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._by_hash: dict[str, Principal] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def principals(self) -> list[tuple[str, Principal]]:
        return list(self._by_hash.items())

    def apply(self, value: bytes) -> None:
        data = orjson.loads(value)
        if data.get("revoked"):
            self._by_hash.pop(data["key_hash"], None)
            return
        self._by_hash[data["key_hash"]] = Principal(
            key_id=data["key_id"],
            name=data["name"],
            roles=frozenset(Role(r) for r in data["roles"] if r in Role._value2member_map_),
            rate_per_s=float(data["rate_per_s"]),
            event_types=None
            if data.get("event_types") is None
            else frozenset(str(t) for t in data["event_types"]),
            team=None if data.get("team") is None else str(data["team"]),
        )

    async def _follow(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # The topic may not exist yet (no key issued); partitions_for_topic() reads the
                # cached metadata, which `topics()` does not refresh: refresh it often instead.
                metadata_max_age_ms=1000,
            )
            try:
                await consumer.start()
                partitions: set[int] = set()
                while not partitions:
                    partitions = consumer.partitions_for_topic(KEYS_TOPIC) or set()
                    if not partitions:
                        await asyncio.sleep(0.5)
                consumer.assign([TopicPartition(KEYS_TOPIC, p) for p in sorted(partitions)])
                while True:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for records in batch.values():
                        for record in records:
                            try:
                                self.apply(record.value)
                            except (ValueError, KeyError, TypeError) as exc:
                                # A record we cannot read grants nobody anything; say so.
                                log.error(
                                    "unreadable key record",
                                    extra={"offset": record.offset, "error": repr(exc)},
                                )
            except KafkaError as exc:
                log.warning("key directory reconnecting", extra={"error": repr(exc)})
                await asyncio.sleep(1)
            finally:
                await consumer.stop()
