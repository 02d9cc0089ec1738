"""SPEC §16 against a real rewards service (real broker, real PostgreSQL): one campaign or period
that fails to settle is recorded as failed with its reason and retried with backoff; every other
campaign settles, and nothing answers 500.

The faults are put into the database by hand, as they would be found in production: a campaign
stored (before windows were checked) with a window in the year 9999, and a stored metric value
that is not a number. The service runs on a schema of its own, so that they stay here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from engage.progress import wait_consumed, wait_keys_known
from engage.stack import ServiceProcess, Stack
from services.rewards.domain.templates import TEMPLATES
from shared.metric_fields import DAY_POINTS, USER_DAY_COUNTERS
from shared.topics import METRICS_TOPIC
from tests.integration.conftest import Keys
from tests.reference.scoring_model import TZ

pytestmark = pytest.mark.asyncio
PROBLEM = "application/problem+json"
SCHEMA = "rewards_isolation"
TEMPLATE = "daily_checkin_draw"  # one lottery rule, "daily-draw", settled per day
RULE = "daily-draw"
FAR_WINDOW = {"starts_at": "9999-06-01T00:00:00+08:00", "ends_at": "9999-12-31T23:00:00+08:00"}


@pytest.fixture(scope="module")
def isolated(stack: Stack) -> Iterator[ServiceProcess]:
    """Rewards with settlement on demand, on its own schema and consumer group."""
    service = stack.start_service(
        "rewards",
        instance="-isolation",
        env={
            "REWARDS_SETTLE_INTERVAL_S": "0",
            "REWARDS_SCHEMA_NAME": SCHEMA,
            "REWARDS_CONSUMER_GROUP": "rewards-isolation",
        },
    )
    yield service
    service.stop()


@dataclass
class Rewards:
    url: str
    database_url: str
    bootstrap: str
    keys: Keys

    def client(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    async def sql(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url.replace("+asyncpg", ""))
        try:
            await conn.execute(f'SET search_path TO "{SCHEMA}"')
            rows: list[asyncpg.Record] = await conn.fetch(statement, *args)
            return rows
        finally:
            await conn.close()


@pytest.fixture
async def rewards(isolated: ServiceProcess, stack: Stack, keys: Keys) -> AsyncIterator[Rewards]:
    assert stack.database_url and stack.kafka_bootstrap
    await wait_keys_known(
        isolated.url, "/v1/templates", [keys.owner, keys.approver, keys.viewer, keys.admin]
    )
    # The metrics published by earlier tests are applied before data is changed by hand.
    await wait_consumed(stack.database_url, stack.kafka_bootstrap, SCHEMA, METRICS_TOPIC)
    yield Rewards(isolated.url, stack.database_url, stack.kafka_bootstrap, keys)


def local_midnight(days_from_today: int) -> datetime:
    d = datetime.now(TZ).date() + timedelta(days=days_from_today)
    return datetime(d.year, d.month, d.day, tzinfo=TZ)


def days(starts_at: datetime, ends_at: datetime) -> list[str]:
    first, n = starts_at.date(), (ends_at.date() - starts_at.date()).days
    return [(first + timedelta(days=i)).isoformat() for i in range(n)]


def open_draw(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    """The check-in draw template open to every user (not only members of enrolled groups):
    these tests' users belong to no group."""
    doc = orjson.loads(orjson.dumps(TEMPLATES[TEMPLATE](starts_at, ends_at)))
    rule = doc["rules"][0]
    rule["eligibility"]["all"] = [
        c for c in rule["eligibility"]["all"] if c.get("metric") != "user.member_of_enrolled_group"
    ]
    doc["enrollment_required"] = False
    return dict(doc)


async def create_active(r: Rewards, starts_at: datetime, ends_at: datetime) -> str:
    async with r.client(r.keys.owner) as owner, r.client(r.keys.approver) as approver:
        body = {"definition": open_draw(starts_at, ends_at)}
        created = await owner.post("/v1/campaigns", json=body)
        assert created.status_code == 201, created.text
        cid: str = created.json()["campaign_id"]
        assert (await owner.post(f"/v1/campaigns/{cid}/versions/1:submit")).status_code == 200
        assert (await approver.post(f"/v1/campaigns/{cid}/versions/1:approve")).status_code == 200
        active = await owner.post(f"/v1/campaigns/{cid}:activate")
        assert active.status_code == 200 and active.json()["state"] == "active", active.text
        return cid


async def run_settlements(r: Rewards) -> dict[str, Any]:
    """POST /v1/settlements:run, waiting (bounded) while it answers 503 for lagging metrics."""
    deadline = asyncio.get_running_loop().time() + 180
    async with r.client(r.keys.admin) as admin:
        while True:
            response = await admin.post("/v1/settlements:run")
            if response.status_code == 200:
                run: dict[str, Any] = response.json()
                return run
            assert response.status_code == 503, response.text
            assert asyncio.get_running_loop().time() < deadline, "settlement never ran"
            await asyncio.sleep(0.5)


async def settlements_of(r: Rewards, campaign_id: str, limit: int = 100) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    async with r.client(r.keys.viewer) as viewer:
        while True:
            response = await viewer.get(f"/v1/campaigns/{campaign_id}/settlements", params=params)
            assert response.status_code == 200, response.text
            items += response.json()["items"]
            if response.json()["next_cursor"] is None:
                return items
            params["cursor"] = response.json()["next_cursor"]


async def metric(r: Rewards, name: str, **labels: str) -> float:
    async with httpx.AsyncClient(base_url=r.url, timeout=10) as c:
        exposition = (await c.get("/metrics")).text
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def mine(items: list[dict[str, Any]], campaign_id: str) -> list[dict[str, Any]]:
    return [i for i in items if i["campaign_id"] == campaign_id]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_a_campaign_that_cannot_be_listed_fails_alone_and_the_others_settle(
    rewards: Rewards,
) -> None:
    r = rewards
    starts_at, ends_at = local_midnight(-5), local_midnight(-1)  # four days, all past the grace
    good = [await create_active(r, starts_at, ends_at) for _ in range(5)]
    bad = await create_active(r, starts_at, ends_at)
    await r.sql(
        "UPDATE campaign_versions SET definition = definition || $2::jsonb WHERE campaign_id = $1",
        bad,
        orjson.dumps(FAR_WINDOW).decode(),
    )
    counted = await metric(r, "engage_settlement_failures_total", campaign=bad)

    began = datetime.now(UTC)
    run = await run_settlements(r)

    settled = Counter(s["campaign_id"] for s in run["settled"])
    assert {cid: settled[cid] for cid in good} == {cid: 4 for cid in good}
    (failed,) = mine(run["failed"], bad)
    assert (failed["rule_id"], failed["period"], failed["attempts"]) == ("*", "*", 1)
    assert failed["reason"] and "\n" not in failed["reason"]
    assert at(failed["next_attempt_at"]) >= began + timedelta(seconds=30)

    (listed,) = await settlements_of(r, bad)
    assert listed["status"] == "failed" and listed["reason"] == failed["reason"]
    assert (listed["rule_id"], listed["period"], listed["attempts"]) == ("*", "*", 1)
    assert at(listed["next_attempt_at"]) == at(failed["next_attempt_at"])
    assert listed["settled_at"] is None and listed["grants"] is None
    for cid in good:
        items = await settlements_of(r, cid)
        assert [(i["status"], i["period"]) for i in items] == [
            ("settled", d) for d in days(starts_at, ends_at)
        ]
        assert all(i["grants"] is not None and i["reason"] is None for i in items)

    again = await run_settlements(r)
    assert datetime.now(UTC) < at(failed["next_attempt_at"]), "too slow to test the backoff"
    assert mine(again["failed"], bad) == []  # not retried before its next attempt
    assert not [s for s in again["settled"] if s["campaign_id"] in good]
    (still,) = await settlements_of(r, bad)
    assert still["attempts"] == 1

    assert await metric(r, "engage_settlement_failures_total", campaign=bad) == counted + 1
    assert await metric(r, "engage_settlements_failing") >= 1

    async with r.client(r.keys.viewer) as viewer:
        simulated = await viewer.post(
            f"/v1/campaigns/{bad}/versions/1:simulate",
            json={"from": starts_at.date().isoformat(), "to": ends_at.date().isoformat()},
        )
    assert simulated.status_code == 422, simulated.text
    assert simulated.headers["content-type"] == PROBLEM
    assert simulated.json()["code"] == "simulation_failed"
    assert simulated.json()["detail"].startswith("the simulation failed: ")

    # The metrics consumer reads the live campaigns for every batch: it leaves the broken one
    # out (counted) and goes on applying metrics — no dead letters, no stall.
    unreadable = await metric(r, "engage_campaigns_unreadable_total", campaign=bad)
    record = {"entity": "user", "grain": "day", "id": "iso-user", "period": "2026-11-20",
              **dict.fromkeys((*USER_DAY_COUNTERS, *DAY_POINTS), 1)}  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=r.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(METRICS_TOPIC, orjson.dumps(record), key=b"iso-user")
    finally:
        await producer.stop()
    await wait_consumed(r.database_url, r.bootstrap, SCHEMA, METRICS_TOPIC, timeout_s=60)
    assert await r.sql("SELECT 1 FROM user_day WHERE user_id = 'iso-user'")
    assert await metric(r, "engage_campaigns_unreadable_total", campaign=bad) > unreadable


async def test_a_period_that_fails_is_retried_with_backoff_and_settles_once_fixed(
    rewards: Rewards,
) -> None:
    r = rewards
    starts_at, ends_at = local_midnight(-40), local_midnight(-36)
    cid = await create_active(r, starts_at, ends_at)
    periods = days(starts_at, ends_at)
    broken = periods[2]
    user = f"corrupt-{cid}"
    await r.sql(
        "INSERT INTO user_day (user_id, day, metrics) VALUES ($1, $2, $3::jsonb)",
        user,
        date.fromisoformat(broken),
        '{"checkins": "many", "online_points": 5}',
    )

    run = await run_settlements(r)
    assert sorted(s["period"] for s in mine(run["settled"], cid)) == [
        p for p in periods if p != broken
    ]
    (failed,) = mine(run["failed"], cid)
    assert (failed["rule_id"], failed["period"], failed["attempts"]) == (RULE, broken, 1)
    assert "invalid input syntax for type double precision" in failed["reason"]

    statuses = [(i["period"], i["status"]) for i in await settlements_of(r, cid)]
    assert statuses == [(p, "failed" if p == broken else "settled") for p in periods]
    assert [(i["period"], i["status"]) for i in await settlements_of(r, cid, limit=1)] == statuses

    async with r.client(r.keys.viewer) as viewer:
        simulated = await viewer.post(
            f"/v1/campaigns/{cid}/versions/1:simulate", json={"from": broken, "to": broken}
        )
    assert simulated.status_code == 422 and simulated.json()["code"] == "simulation_failed"
    assert "invalid input syntax" in simulated.json()["detail"]

    # Time passes: the next attempt is due. It fails again and waits twice as long.
    retry_due = "UPDATE settlement_failures SET next_attempt_at = now() WHERE campaign_id = $1"
    await r.sql(retry_due, cid)
    run = await run_settlements(r)
    (failed,) = mine(run["failed"], cid)
    assert failed["attempts"] == 2
    (listed,) = [i for i in await settlements_of(r, cid) if i["status"] == "failed"]
    assert at(listed["next_attempt_at"]) - at(listed["last_failed_at"]) == timedelta(seconds=60)
    assert at(listed["first_failed_at"]) < at(listed["last_failed_at"])

    failing = await metric(r, "engage_settlements_failing")
    await r.sql(
        "UPDATE user_day SET metrics = $2::jsonb WHERE user_id = $1",
        user,
        '{"checkins": 1, "online_points": 5}',
    )
    await r.sql(retry_due, cid)
    run = await run_settlements(r)
    assert mine(run["failed"], cid) == []
    (fixed,) = mine(run["settled"], cid)
    assert (fixed["period"], fixed["grants"]) == (broken, 1)  # the one entrant wins
    items = await settlements_of(r, cid)
    assert [(i["period"], i["status"]) for i in items] == [(p, "settled") for p in periods]
    assert all(i["attempts"] is None for i in items)
    assert await metric(r, "engage_settlements_failing") == failing - 1
