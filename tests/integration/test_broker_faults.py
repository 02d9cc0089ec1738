"""Broker faults: ingest answers 503 + Retry-After and loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from engage.runtime import EmbeddedBroker
from engage.stack import ServiceProcess, Stack
from engage.topic_audit import tally_topic
from shared.topics import EVENTS_TOPIC
from tests.builders import make_event
from tests.integration.conftest import Keys

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.fixture(scope="module")
def faulty(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A broker of its own (so faults do not disturb other tests), sharing the database."""
    own = Stack(
        var_dir=Path(tmp_path_factory.mktemp("faulty")),
        fixed_ports=False,
        database_url=stack.database_url,
    ).start_infra()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture(scope="module")
def ingest(faulty: Stack) -> ServiceProcess:
    return faulty.start_service("ingest", env={"INGEST_BROKER_ACK_TIMEOUT_S": "1"})


@dataclass
class Poster:
    """A client that keeps posting batches, retrying 503s with the same event ids."""

    url: str
    key: str
    acked: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    acked_batches: int = 0
    stop: bool = False

    async def run(self, max_batches: int = 2000) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            for _ in range(max_batches):
                if self.stop:
                    return
                batch = [make_event() for _ in range(20)]
                while not self.stop:
                    r = await client.post("/v1/events", json={"events": batch}, headers=headers)
                    self.statuses[r.status_code] += 1
                    if r.status_code == 202:
                        self.acked.update(e["event_id"] for e in batch)
                        self.acked_batches += 1
                        break
                    assert r.status_code == 503, r.text
                    assert r.headers["content-type"] == "application/problem+json"
                    await asyncio.sleep(min(float(r.headers["retry-after"]), 0.2))


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def poster(
    ingest: ServiceProcess, keys: Keys
) -> AsyncIterator[tuple[Poster, asyncio.Task[None]]]:
    p = Poster(ingest.url, keys.ingest)
    task = asyncio.create_task(p.run())
    yield p, task
    p.stop = True
    await asyncio.wait_for(task, 30)


async def test_frozen_broker_gets_503_and_no_acknowledged_event_is_lost(
    faulty: Stack, poster: tuple[Poster, asyncio.Task[None]]
) -> None:
    p, task = poster
    assert faulty.broker is not None and faulty.broker.proc is not None
    await until(lambda: p.acked_batches >= 20, 30, "20 batches before the fault")
    faulty.broker.proc.send_signal(signal.SIGSTOP)
    try:
        await until(
            lambda: p.statuses[503] >= 2, 30, "ingest to answer 503 while the broker is frozen"
        )
    finally:
        faulty.broker.proc.send_signal(signal.SIGCONT)
    resumed_from = p.acked_batches
    await until(lambda: p.acked_batches >= resumed_from + 20, 60, "ingest to accept again")
    p.stop = True
    await asyncio.wait_for(task, 30)

    assert set(p.statuses) <= {202, 503}
    assert faulty.kafka_bootstrap
    tally = await tally_topic(faulty.kafka_bootstrap, EVENTS_TOPIC)
    lost = p.acked - tally.event_ids
    assert not lost, f"{len(lost)} acknowledged events missing from the topic"


async def test_killed_broker_gets_503_and_ingest_recovers_when_it_returns(
    faulty: Stack, ingest: ServiceProcess, poster: tuple[Poster, asyncio.Task[None]]
) -> None:
    p, task = poster
    assert faulty.broker is not None
    await until(lambda: p.acked_batches >= 10, 30, "batches before the fault")
    port = faulty.broker.port
    faulty.broker.kill()
    await until(lambda: p.statuses[503] >= 2, 30, "503 while the broker is down")
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        assert (await client.get("/readyz")).status_code == 503
    # Memory storage: the restarted broker is empty; what matters is that ingest resumes by
    # itself and that whatever it acknowledges from now on is on the topic.
    acked_before_restart = set(p.acked)
    faulty.broker = EmbeddedBroker(port=port).start()
    restarted_from = p.acked_batches
    await until(lambda: p.acked_batches >= restarted_from + 20, 60, "ingest to accept again")
    p.stop = True
    await asyncio.wait_for(task, 30)

    assert set(p.statuses) <= {202, 503}
    assert faulty.kafka_bootstrap
    tally = await tally_topic(faulty.kafka_bootstrap, EVENTS_TOPIC)
    acked_after = p.acked - acked_before_restart
    assert acked_after and not (acked_after - tally.event_ids)
