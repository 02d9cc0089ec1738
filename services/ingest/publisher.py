"""Writes accepted events to `engage.events.v1`, answering only once the broker acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Histogram

from services.ingest.domain.intake import AcceptedEvent
from shared.contract import Authority, encode_envelope
from shared.errors import Unavailable
from shared.kafka import ensure_topics, make_producer
from shared.topics import EVENTS_TOPIC

log = logging.getLogger(__name__)

PUBLISH_SECONDS = Histogram(
    "engage_ingest_publish_seconds",
    "Time from handing a request's events to the producer until the broker acknowledged all.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class EventPublisher:
    """Owns the producer; (re)connects in the background so ingest starts even if Kafka is down."""

    def __init__(
        self,
        bootstrap: str,
        ack_timeout_s: float,
        topics: dict[str, int],
        client_id: str = "ingest",
    ) -> None:
        self._bootstrap = bootstrap
        self._ack_timeout_s = ack_timeout_s
        self._topics = topics
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_forever())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connector), timeout=10)

    async def _connect_forever(self) -> None:
        delay = 0.2
        while self._producer is None:
            producer = make_producer(
                self._bootstrap, self._client_id, request_timeout_ms=int(self._ack_timeout_s * 1000)
            )
            try:
                await producer.start()
                self._producer = producer
                log.info("connected to the broker", extra={"bootstrap": self._bootstrap})
            except KafkaError as exc:
                await producer.stop()
                log.warning("broker not reachable yet", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _begin_recovery(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover())

    async def _recover(self) -> None:
        """After a failed write, accept nothing until the topics are whole again.

        A restarted broker may have lost or shrunk a topic; writing before it is re-created
        with all its partitions could have records acknowledged and then lost.
        """
        delay = 0.2
        while True:
            try:
                await ensure_topics(self._bootstrap, self._topics, timeout_s=self._ack_timeout_s)
                await self._replace_producer()
                log.info("broker writes resumed")
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("broker still unavailable", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _replace_producer(self) -> None:
        """Write through a fresh producer from now on. An old one can be wedged for good: when
        a connection is reset mid-send, aiokafka's sender routine may die ("Unexpected error
        in sender routine", a write on a closed uvloop transport) and every later write fails
        (found by the chaos suite)."""
        fresh = make_producer(
            self._bootstrap, self._client_id, request_timeout_ms=int(self._ack_timeout_s * 1000)
        )
        try:
            await fresh.start()
        except BaseException:
            await fresh.stop()
            raise
        old, self._producer = self._producer, fresh
        if old is not None:
            task = asyncio.create_task(self._close(old))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close(self, producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), timeout=self._ack_timeout_s * 5)

    async def stop(self) -> None:
        for task in (self._connector, self._recovery):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._producer is not None:
            await self._producer.stop()

    async def ready(self) -> str | None:
        if self._producer is None:
            return "kafka: not connected"
        if self._recovery is not None and not self._recovery.done():
            return "kafka: recovering from a failed write"
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=2)
        except (KafkaError, TimeoutError) as exc:
            return f"kafka: {type(exc).__name__}"
        return None

    async def publish(
        self,
        events: Sequence[AcceptedEvent],
        received_at: str,
        source: str,
        authority: Authority,
    ) -> None:
        """Send every event keyed by `user_id`, stamped with its source and the authority that
        vouched for it; return only when all are acknowledged."""
        producer = self._producer
        if producer is None or (self._recovery is not None and not self._recovery.done()):
            raise Unavailable("the event broker is not reachable; retry with the same event_id")
        start = time.perf_counter()
        # The producer bounds both waits by `request_timeout_ms` (= the ack timeout): send()
        # for metadata or buffer space, each future for the broker's ack. An asyncio.timeout
        # here would cost ~6% of a single-event request for nothing.
        try:
            futures = [
                await producer.send(
                    EVENTS_TOPIC,
                    encode_envelope(e.raw, received_at, source, authority),
                    key=e.event.user_id.encode(),
                )
                for e in events
            ]
            for future in futures:  # each is acked or raises; no gather task per request
                await future
        except (KafkaError, TimeoutError) as exc:
            log.warning("broker did not confirm a write", extra={"error": repr(exc)})
            self._begin_recovery()
            raise Unavailable(
                "the event broker did not confirm the write; retry with the same event_id"
            ) from None
        PUBLISH_SECONDS.observe(time.perf_counter() - start)
