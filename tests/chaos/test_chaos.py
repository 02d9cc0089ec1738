"""Fault injection over the whole pipeline (ISSUE 7): each scenario posts the same seeded month
and a half through ingest (≈ 51,000 deliveries incl. resends, shuffled) into a fresh broker and
database, breaks things while the events flow, waits until everything drained and then compares
the results with the reference (tests/chaos/checker.py). The checker's counts are printed at the
end of the run. Fault moments are drawn from a seeded generator and keyed to progress (events
applied, deliveries posted), not to wall-clock time, so every run hits the same stages.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.chaos.checker import check
from tests.chaos.harness import CONSUMERS, Pipeline, pipeline, until

pytestmark = [pytest.mark.asyncio, pytest.mark.slow, pytest.mark.timeout(480)]
SEED = 20261122


async def run(pipe: Pipeline, faults: Callable[[], Awaitable[None]]) -> None:
    """Post everything while `faults` runs; then let the pipeline drain."""
    poster = asyncio.create_task(pipe.post_all())
    try:
        await faults()
        await poster
    finally:
        if not poster.done():
            poster.cancel()
    await pipe.drain()


async def applied_at_least(pipe: Pipeline, share: float) -> None:
    target = int(share * len(pipe.events))
    await until(pipe.scoring_applied, lambda n: n >= target, 180, f"{target:,} events applied")


async def posted_at_least(pipe: Pipeline, share: float) -> None:
    async def permille() -> int:
        return int(pipe.share_posted() * 1000)

    await until(permille, lambda n: n >= share * 1000, 180, f"{share:.0%} posted")


async def assert_exact(pipe: Pipeline, scenario: str, faults: dict[str, Any]) -> None:
    report = await check(pipe, scenario, faults)
    assert report.ok(), report.render()


async def test_baseline_and_the_checker_sees_tampering(tmp_path: Path) -> None:
    """No faults: exact. Then three deliberate defects, each reported where it belongs."""
    async with pipeline(tmp_path) as pipe:

        async def poison_mid_stream() -> None:
            await applied_at_least(pipe, 0.4)
            await pipe.force_poison()

        await run(pipe, poison_mid_stream)
        await assert_exact(pipe, "baseline + poison mid-stream", {"poison records": 2})

        conn = await asyncpg.connect(pipe.url.replace("+asyncpg", ""))
        try:  # an event counted twice; a grant given to the wrong user; a message sent twice
            await conn.execute(
                "UPDATE scoring.user_day SET messages = messages + 1 WHERE (user_id, day) = "
                "(SELECT user_id, day FROM scoring.user_day WHERE messages > 0 LIMIT 1)"
            )
            await conn.execute(
                "UPDATE rewards.grants SET user_id = 'u-nobody' "
                "WHERE grant_id = (SELECT min(grant_id) FROM rewards.grants)"
            )
        finally:
            await conn.close()
        first = pipe.im.receipts[0]
        pipe.im.receipts.append(type(first)("999999", first.user_id, first.received_at))
        report = await check(pipe, "baseline, tampered (must NOT be exact)", {"tampered": 3})
        tallies = {t.name: t for t in report.tallies}
        assert tallies["events applied"].duplicated == 1
        assert (tallies["grants"].lost, tallies["grants"].unexpected) == (1, 1)
        assert tallies["messages received (IM + SMS)"].unexpected == 1
        assert any(m.startswith("user-days") for m in report.mismatches)
        assert any("over the daily cap at the platform" in m for m in report.mismatches)
        assert not report.ok()


async def test_consumers_sigkilled_at_seeded_moments(tmp_path: Path) -> None:
    """SIGKILL scoring, rewards and notify three times each, mid-stream, restarting each at
    once (a Deployment would). The moments are seeded shares of the stream."""
    rnd = random.Random(SEED)
    plan = sorted((rnd.uniform(0.05, 0.9), name) for name in CONSUMERS for _ in range(3))
    poison_at = rnd.uniform(0.2, 0.6)
    async with pipeline(tmp_path) as pipe:

        async def faults() -> None:
            for share, name in sorted([*plan, (poison_at, "poison")]):
                await applied_at_least(pipe, share)
                if name == "poison":  # records no intake accepts, amid the crashes
                    await pipe.force_poison()
                else:
                    await pipe.crash_and_restart(name)

        await run(pipe, faults)
        assert pipe.restarts == dict.fromkeys(CONSUMERS, 3)
        await assert_exact(
            pipe,
            "SIGKILL ×3 each consumer",
            {f"SIGKILLs of {n}": pipe.restarts[n] for n in CONSUMERS}
            | {"at shares of the stream": [round(s, 2) for s, _ in plan]}
            | {"poison records at": round(poison_at, 2)},
        )


async def test_broker_unreachable_frozen_and_restarted_during_ingest(tmp_path: Path) -> None:
    """While events are posted: the broker unreachable (blackholed), down (connections reset,
    new ones refused — a restart as every client sees it), frozen (SIGSTOP), and every
    connection reset once more. Ingest answers 503 and clients retry with the same event_id."""
    rnd = random.Random(SEED + 1)
    at = sorted(rnd.uniform(0.05, 0.8) for _ in range(4))
    async with pipeline(tmp_path) as pipe:
        proxy, broker = pipe.broker_proxy, pipe.broker
        assert broker.proc is not None

        async def faults() -> None:
            await posted_at_least(pipe, at[0])
            proxy.blackhole(True)
            await asyncio.sleep(5)  # the outage's length, not a wait for a condition
            proxy.blackhole(False)
            await posted_at_least(pipe, at[1])
            proxy.refuse(True)
            await asyncio.sleep(4)
            proxy.refuse(False)
            await posted_at_least(pipe, at[2])
            broker.proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(5)
            broker.proc.send_signal(signal.SIGCONT)
            await posted_at_least(pipe, at[3])
            proxy.reset_all()

        await run(pipe, faults)
        assert pipe.retries() > 0, "the outages never reached the clients"
        await assert_exact(
            pipe,
            "broker blackholed 5 s, down 4 s, frozen 5 s, connections reset",
            {
                "client retries (503 / connection errors)": pipe.retries(),
                "connections reset by the proxy": proxy.stats.resets,
                "connections refused": proxy.stats.refused,
                "at shares posted": [round(s, 2) for s in at],
            },
        )


async def test_database_connections_killed_and_postgres_restarted(tmp_path: Path) -> None:
    """pg_terminate_backend of every service connection, twice, then PostgreSQL restarted
    (immediate shutdown: crash recovery) while the consumers are mid-stream."""
    rnd = random.Random(SEED + 2)
    at = sorted(rnd.uniform(0.1, 0.8) for _ in range(3))
    terminated: list[int] = []
    async with pipeline(tmp_path) as pipe:

        async def terminate_all() -> int:
            conn = await asyncpg.connect(pipe.url.replace("+asyncpg", ""))
            try:
                return len(
                    await conn.fetch(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    )
                )
            finally:
                await conn.close()

        async def faults() -> None:
            for share in at[:2]:
                await applied_at_least(pipe, share)
                terminated.append(await terminate_all())
            await applied_at_least(pipe, at[2])
            await asyncio.to_thread(pipe.postgres.stop, "immediate")
            await asyncio.sleep(2)  # down for a while, not a wait for a condition
            await asyncio.to_thread(pipe.postgres.start)

        await run(pipe, faults)
        assert all(n > 0 for n in terminated)
        await assert_exact(
            pipe,
            "DB connections terminated ×2, PostgreSQL restarted",
            {
                "connections terminated": terminated,
                "PostgreSQL restarts": 1,
                "at shares applied": [round(s, 2) for s in at],
            },
        )


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{"))


async def test_paused_consumers_resume_as_harmless_zombies(tmp_path: Path) -> None:
    """Scoring, then rewards, SIGSTOPped for 14 s (past the 10 s session timeout) while a new
    owner consumes their partitions from the offsets stored in the database; then resumed, with
    whatever batch, fetched records and positions they held, and left running beside the new
    owner to the end. Nothing they held may be applied twice or stored over the new owner's
    offsets: the results must stay exact. How each zombie was fenced is reported: a batch that
    failed (its transaction ended by the server after 5 s idle) and rewound, and records skipped
    as already applied.

    The new owner is a second deployment in a consumer group of its own over the same schema:
    Tansu 0.6 does not evict a frozen member (observed: after the session timeout the group
    rebalances, but the frozen member keeps its partitions until it returns). Offsets live in
    the database, so what fences a zombie is the same either way. A zombie frozen while the
    server sends it a result holds its locks until it resumes, so the owner may only get going
    then; the test does not require progress during the pause."""
    rnd = random.Random(SEED + 3)
    at = sorted(rnd.uniform(0.1, 0.5) for _ in range(2))
    async with pipeline(tmp_path) as pipe:
        progress = {"scoring": pipe.scoring_applied, "rewards": pipe.rewards_consumed}
        moved: dict[str, int] = {}

        async def faults() -> None:
            for share, name in zip(at, ("scoring", "rewards"), strict=True):
                await applied_at_least(pipe, share)
                zombie = pipe.service(name)
                zombie.signal(signal.SIGSTOP)
                paused_at = asyncio.get_running_loop().time()
                before = await progress[name]()
                group = f"{name.upper()}_CONSUMER_GROUP"
                await asyncio.to_thread(
                    pipe.stack.start_service, name, instance="-owner",
                    env=pipe.env[name] | {group: f"{name}-owner"},
                )  # fmt: skip
                await asyncio.sleep(max(0.0, 14 - (asyncio.get_running_loop().time() - paused_at)))
                moved[name] = await progress[name]() - before
                zombie.signal(signal.SIGCONT)

        await run(pipe, faults)
        replayed, failed = {}, {}
        async with httpx.AsyncClient(timeout=10) as c:
            for name in ("scoring", "rewards"):
                text = (await c.get(f"{pipe.service(name).url}/metrics")).text
                replayed[name] = int(_metric(text, "engage_consumer_replayed_total"))
                failed[name] = pipe.service(name).log_tail(100_000).count("batch not applied")
        await assert_exact(
            pipe,
            "scoring and rewards SIGSTOPped 14 s, new owner took over, zombie resumed",
            {
                "records moved on by the new owner during the pause": moved,
                "zombie records skipped (engage_consumer_replayed_total)": replayed,
                "zombie batches failed and rewound": failed,
                "at shares applied": [round(s, 2) for s in at],
            },
        )


async def test_fault_proxy_latency_blackhole_and_resets(tmp_path: Path) -> None:
    """Through the proxies: latency on the broker and database links, the database blackholed,
    then every database and every broker connection reset."""
    rnd = random.Random(SEED + 4)
    at = sorted(rnd.uniform(0.05, 0.85) for _ in range(5))
    async with pipeline(tmp_path) as pipe:
        broker, db = pipe.broker_proxy, pipe.db_proxy

        async def faults() -> None:
            await applied_at_least(pipe, at[0])
            broker.set_latency(0.03)
            db.set_latency(0.01)
            await applied_at_least(pipe, at[1])
            broker.set_latency(0)
            db.set_latency(0)
            db.blackhole(True)
            await asyncio.sleep(4)  # the partition's length
            db.blackhole(False)
            await applied_at_least(pipe, at[2])
            db.reset_all()
            await applied_at_least(pipe, at[3])
            broker.reset_all()
            await applied_at_least(pipe, at[4])
            broker.set_latency(0.1)
            await asyncio.sleep(3)
            broker.set_latency(0)

        await run(pipe, faults)
        await assert_exact(
            pipe,
            "latency 30/10 ms, DB blackholed 4 s, DB and broker connections reset, latency 100 ms",
            {
                "DB connections reset": db.stats.resets,
                "broker connections reset": broker.stats.resets,
                "at shares applied": [round(s, 2) for s in at],
            },
        )
