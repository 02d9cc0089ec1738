"""Scoring against an independent reference (SPEC §4), including crashes and two replicas.

One seeded simulation (≥ 50,000 deliveries, with duplicates and out-of-order arrival) is posted
through ingest once; each scenario then runs scoring in a schema and consumer group of its own
over the same topic, waits until every accepted event is in its ledger, and compares every
group-month, every province's leaderboard and a sample of user-days and user-months with the
reference computed in tests/reference/scoring_model.py.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from engage.demo import simulate_through_ingest, split_months
from engage.dlq import dead_letters
from engage.progress import processed_events, wait_consumed
from engage.progress import wait_processed as wait_for_ledger
from engage.simulator.world import SimConfig
from engage.stack import ServiceProcess, Stack
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.contract import encode_envelope
from shared.topics import EVENTS_DLQ, EVENTS_TOPIC
from tests.builders import make_event
from tests.reference import scoring_model as ref

pytestmark = pytest.mark.asyncio
GROUP_MONTH_FIELDS = (
    "members",
    "active_members",
    "activity_points",
    "points_growth",
    "bonus_points",
    "group_messages",
)
CONFIG = SimConfig(seed=20261122, users=400, groups=30, duplicate_rate=0.03, shuffle_window=2000)


@dataclass
class Simulation:
    stack: Stack
    viewer_key: str
    events: list[dict[str, Any]]  # distinct accepted events
    deliveries: int
    months: list[str]
    expected: ref.Expected
    poison: set[tuple[int, int]]  # (partition, offset) of records forced past intake


def poison_records(now: datetime) -> list[tuple[bytes, bytes]]:
    """(key, value) of records no intake would accept, produced straight onto the topic: the
    import that stopped scoring for good (issue 13), a time beyond year 9999 in local time, and
    bytes that are not JSON."""
    received = now.isoformat()
    ancient = make_event("message", occurred_at="0001-01-01T00:00:00+14:00", user_id="rtu1")
    beyond = make_event("message", occurred_at="9999-12-31T20:00:00+00:00", user_id="rtu2")
    return [
        (b"rtu1", encode_envelope(ancient, received, "poison", "import")),
        (b"rtu2", encode_envelope(beyond, received, "poison", "import")),
        (b"rtu3", b"not json at all"),
    ]


async def force_onto_topic(
    bootstrap: str, records: list[tuple[bytes, bytes]]
) -> set[tuple[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(EVENTS_TOPIC, value, key=key) for key, value in records]
        return {(m.partition, m.offset) for m in [await f for f in sent]}
    finally:
        await producer.stop()


async def assert_dead_lettered(sim: Simulation, group: str) -> None:
    """Every poison record is in scoring's DLQ with its reason, and nothing else is."""
    assert sim.stack.kafka_bootstrap
    letters = [
        d for d in await dead_letters(sim.stack.kafka_bootstrap, (EVENTS_DLQ,)) if d.group == group
    ]
    assert {(d.source_partition, d.source_offset) for d in letters} == sim.poison
    assert all(d.reason and d.source_topic == EVENTS_TOPIC for d in letters)


@pytest.fixture(scope="module")
def sim_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(var_dir=Path(tmp_path_factory.mktemp("scoring")), fixed_ports=False).start_infra()
    try:
        stack.start_service("ingest")
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
async def simulation(sim_stack: Stack) -> Simulation:
    url, bootstrap = sim_stack.database_url, sim_stack.kafka_bootstrap
    assert url and bootstrap
    live = (await issue_api_key(url, "sim", [Role.PLATFORM], 1e6, bootstrap)).secret
    importer = (await issue_api_key(url, "imp", [Role.IMPORTER], 1e6, bootstrap)).secret
    viewer = (await issue_api_key(url, "view", [Role.VIEWER], 1e6, bootstrap)).secret
    now = datetime.now(UTC)
    poison = await force_onto_topic(bootstrap, poison_records(now)[:2])  # before everything
    imported, posted = await simulate_through_ingest(
        sim_stack.services["ingest"].url, live, importer, CONFIG, now
    )
    history, current = split_months(CONFIG, now)
    accepted = imported.accepted_ids | posted.accepted_ids
    events = [e for e in history + current if e["event_id"] in accepted]
    assert imported.rejected == posted.rejected == 0
    deliveries = imported.sent + posted.sent
    assert deliveries >= 50_000 and deliveries > len(events), "want ≥ 50k deliveries with repeats"
    months = sorted({ref.month_key(ref.day_of(ref.ts(e["occurred_at"]))) for e in events})
    poison |= await force_onto_topic(bootstrap, poison_records(now)[2:])  # and at the end
    expected = ref.compute(events, months)
    return Simulation(sim_stack, viewer, events, deliveries, months, expected, poison)


def start_scoring(stack: Stack, schema: str, instance: str = "") -> ServiceProcess:
    return stack.start_service(
        "scoring",
        instance=f"-{schema}{instance}",
        env={
            "SCORING_SCHEMA_NAME": schema,
            "SCORING_CONSUMER_GROUP": schema,
            "SCORING_MAX_BATCH_RECORDS": "2000",
        },
    )


async def processed(stack: Stack, schema: str) -> int:
    assert stack.database_url
    return await processed_events(stack.database_url, schema)


async def wait_processed(stack: Stack, schema: str, target: int, timeout_s: float = 180) -> None:
    assert stack.database_url
    await wait_for_ledger(stack.database_url, target, schema, timeout_s)


async def wait_consumed_all(stack: Stack, schema: str) -> None:
    assert stack.database_url and stack.kafka_bootstrap
    await wait_consumed(stack.database_url, stack.kafka_bootstrap, schema, EVENTS_TOPIC, 120)


async def compare_with_reference(sim: Simulation, scoring: ServiceProcess) -> dict[str, int]:
    exp = sim.expected
    headers = {"Authorization": f"Bearer {sim.viewer_key}"}
    checked = {"group_months": 0, "leaderboards": 0, "user_days": 0, "user_months": 0}
    async with httpx.AsyncClient(base_url=scoring.url, headers=headers, timeout=30) as c:
        for month in sim.months:
            # Every group seen has a month (SPEC §9): the reference's, or zeros when it had
            # neither members at the month's end nor messages or bonus cards in it.
            for g in sorted(exp.seen_groups):
                r = await c.get(f"/v1/groups/{g}/months/{month}")
                assert r.status_code == 200, (g, month, r.text)
                want = exp.group_month.get((g, month), dict.fromkeys(GROUP_MONTH_FIELDS, 0))
                got = {k: r.json()[k] for k in want}
                assert got == want, f"group {g} {month}"
                checked["group_months"] += 1
            r = await c.get(f"/v1/groups/never-seen/months/{month}")
            assert (r.status_code, r.json()["code"]) == (404, "group_not_found")
            for province in sorted({i["province"] for i in exp.groups.values() if "province" in i}):
                r = await c.get(f"/v1/leaderboards/{month}/{province}", params={"limit": 500})
                assert [i["group_id"] for i in r.json()["items"]] == ref.leaderboard(
                    exp, month, province
                ), f"leaderboard {month} {province}"
                checked["leaderboards"] += 1
        rnd = random.Random(7)
        for u, d in rnd.sample(sorted(exp.user_day), 300):
            got = (await c.get(f"/v1/users/{u}/days/{d.isoformat()}")).json()
            want = exp.user_day[(u, d)]
            assert {k: got[k] for k in want} == want, f"user {u} {d}"
            assert got["first_seen"] == exp.first_seen[u].isoformat(), f"user {u} first_seen"
            checked["user_days"] += 1
        for u, m in rnd.sample(sorted(exp.user_month), 150):
            got = (await c.get(f"/v1/users/{u}/months/{m}")).json()
            want = dict(exp.user_month[(u, m)])
            assert {k: got[k] for k in want} == want, f"user {u} {m}"
            checked["user_months"] += 1
    assert checked["group_months"] >= len(sim.months) * 20
    return checked


async def test_scoring_equals_the_independent_reference(simulation: Simulation) -> None:
    scoring = start_scoring(simulation.stack, "scoring_ref")
    await wait_processed(simulation.stack, "scoring_ref", len(simulation.events))
    counts = await compare_with_reference(simulation, scoring)
    await wait_consumed_all(simulation.stack, "scoring_ref")
    await assert_dead_lettered(simulation, "scoring_ref")
    print(
        f"\nreference check: {simulation.deliveries:,} deliveries, "
        f"{len(simulation.events):,} distinct events, compared {counts}"
    )


@pytest.mark.slow
async def test_sigkill_mid_stream_several_times_changes_nothing(simulation: Simulation) -> None:
    stack, schema = simulation.stack, "scoring_kill"
    rnd = random.Random(11)
    target = len(simulation.events)
    kills = 0
    for _ in range(3):
        scoring = start_scoring(stack, schema)
        start = await processed(stack, schema)
        kill_at = start + rnd.randint(2_000, 8_000)
        await wait_processed(stack, schema, min(kill_at, target))
        if await processed(stack, schema) >= target:
            break
        scoring.signal(signal.SIGKILL)
        scoring.proc.wait()
        kills += 1
    assert kills >= 2, "the stream ended before the process could be killed twice"
    scoring = start_scoring(stack, schema, instance="-final")
    await wait_processed(stack, schema, target)
    counts = await compare_with_reference(simulation, scoring)
    await wait_consumed_all(stack, schema)
    await assert_dead_lettered(simulation, schema)
    print(f"\nafter {kills} SIGKILLs mid-stream: compared {counts}")


@pytest.mark.slow
async def test_two_replicas_then_one_killed_changes_nothing(simulation: Simulation) -> None:
    stack, schema = simulation.stack, "scoring_pair"
    a = start_scoring(stack, schema, instance="-a")
    b = start_scoring(stack, schema, instance="-b")
    await wait_processed(stack, schema, min(10_000, len(simulation.events) // 3))
    a.signal(signal.SIGKILL)
    a.proc.wait()
    await wait_processed(stack, schema, len(simulation.events))
    counts = await compare_with_reference(simulation, b)
    await wait_consumed_all(stack, schema)
    await assert_dead_lettered(simulation, schema)
    assert "deadlock" not in b.log_tail(2000).lower()
    print(f"\ntwo replicas, one SIGKILLed: compared {counts}")
