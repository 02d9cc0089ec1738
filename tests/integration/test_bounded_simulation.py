"""No request can exhaust a service (SPEC §15, issue 18 item 3): simulations are admitted a few
at a time (429 with Retry-After beyond the per-key and per-replica limits), refused up front
over their size budget (422 `simulation_too_large`), bounded in time (503
`simulation_timeout`), and cancelled with their client — the database statement too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson
import pytest

from engage.progress import wait_keys_known
from engage.stack import ServiceProcess, Stack
from services.rewards.domain.templates import weekend_chat_boost
from tests.integration.conftest import Keys

pytestmark = pytest.mark.asyncio
PROBLEM = "application/problem+json"
TZ = ZoneInfo("Asia/Shanghai")
SCHEMA = "rewards_bounded"
USERS, DAYS = 300, 20
BUDGET = 5_000  # user-days: 20 days × 1 rule × 300 users = 6,000 is over it, 10 days is not
LAST = datetime.now(TZ).date() - timedelta(days=1)
FIRST = LAST - timedelta(days=DAYS - 1)
# The simulation's row stream (store/snapshots.py) and the estimate's bounded count.
USER_DAY_QUERY = "%FROM user_day%"


@dataclass(frozen=True)
class Bounded:
    rewards: ServiceProcess
    database_url: str  # asyncpg's form
    campaign_id: str

    def simulate(
        self, c: httpx.AsyncClient, key: str, first: date = FIRST, last: date = FIRST
    ) -> Awaitable[httpx.Response]:
        return c.post(
            f"/v1/campaigns/{self.campaign_id}/versions/1:simulate",
            json={"from": first.isoformat(), "to": last.isoformat(), "sample": 1},
            headers={"Authorization": f"Bearer {key}"},
        )


async def load_user_days(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            f"INSERT INTO {SCHEMA}.user_day (user_id, day, metrics) "
            "SELECT 'U' || i, $1::date + d, jsonb_build_object('messages_mobile', 40) "
            "FROM generate_series(0, $2 - 1) d, generate_series(0, $3 - 1) i "
            "ON CONFLICT DO NOTHING",
            FIRST,
            DAYS,
            USERS,
        )
    finally:
        await conn.close()


def start_bounded(stack: Stack, instance: str, **env: str) -> ServiceProcess:
    return stack.start_service(
        "rewards",
        instance=instance,
        env={
            "REWARDS_SCHEMA_NAME": SCHEMA,
            "REWARDS_CONSUME": "false",
            "REWARDS_SIMULATION_MAX_USER_DAYS": str(BUDGET),
            "ENGAGE_HEAVY_MAX_PER_SERVICE": "2",
            "ENGAGE_HEAVY_MAX_PER_KEY": "1",
            **env,
        },
    )


@pytest.fixture(scope="module")
async def bounded(stack: Stack, keys: Keys) -> AsyncIterator[Bounded]:
    assert stack.database_url
    rewards = start_bounded(stack, "-bounded")
    try:
        url = stack.database_url.replace("+asyncpg", "")
        await load_user_days(url)
        await wait_keys_known(rewards.url, "/v1/templates", [keys.owner, keys.viewer])
        starts_at = datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=TZ) - timedelta(days=7)
        doc = orjson.loads(orjson.dumps(weekend_chat_boost(starts_at, starts_at + timedelta(60))))
        async with httpx.AsyncClient(base_url=rewards.url, timeout=30) as c:
            r = await c.post(
                "/v1/campaigns",
                json={"definition": doc},
                headers={"Authorization": f"Bearer {keys.owner}"},
            )
            assert r.status_code == 201, r.text
            yield Bounded(rewards, url, r.json()["campaign_id"])
    finally:
        rewards.stop()


@asynccontextmanager
async def locked(database_url: str, table: str) -> AsyncIterator[asyncpg.Connection]:
    """Every read of `table` waits while this holds: a request stays running, on demand."""
    conn = await asyncpg.connect(database_url)
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(f"LOCK TABLE {SCHEMA}.{table} IN ACCESS EXCLUSIVE MODE")
        yield conn
    finally:
        await tx.rollback()
        await conn.close()


def user_days_locked(database_url: str) -> AbstractAsyncContextManager[asyncpg.Connection]:
    return locked(database_url, "user_day")


async def queries_on_user_day(database_url: str, like: str = USER_DAY_QUERY) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE $1 AND pid <> pg_backend_pid()",
                like,
            )
        )
    finally:
        await conn.close()


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, deadline_s: float = 20
) -> None:
    deadline = time.monotonic() + deadline_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {deadline_s} s: {what}")
        await asyncio.sleep(0.05)


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    return body


async def test_a_simulation_over_its_size_budget_is_refused_up_front(
    bounded: Bounded, keys: Keys
) -> None:
    async with httpx.AsyncClient(base_url=bounded.rewards.url, timeout=30) as c:
        r = await bounded.simulate(c, keys.viewer, FIRST, LAST)
        body = assert_problem(r, 422, "simulation_too_large")
        assert body["estimate_user_days"] > BUDGET and body["limit_user_days"] == BUDGET
        assert "REWARDS_SIMULATION_MAX_USER_DAYS" in body["detail"] and "day(s)" in body["detail"]
        # Narrowed as it says, it runs.
        r = await bounded.simulate(c, keys.viewer, FIRST, FIRST + timedelta(days=9))
        assert r.status_code == 200, r.text


async def test_simulations_beyond_the_key_and_replica_limits_get_429_with_retry_after(
    bounded: Bounded, keys: Keys
) -> None:
    async with httpx.AsyncClient(base_url=bounded.rewards.url, timeout=60) as c:
        async with user_days_locked(bounded.database_url):
            first = asyncio.ensure_future(bounded.simulate(c, keys.viewer))
            second = asyncio.ensure_future(bounded.simulate(c, keys.owner))

            async def both_running() -> bool:
                return await queries_on_user_day(bounded.database_url) >= 2

            await wait_for(both_running, "two simulations waiting on user_day")
            same_key = await bounded.simulate(c, keys.viewer)
            assert (
                "ENGAGE_HEAVY_MAX_PER_KEY"
                in assert_problem(same_key, 429, "rate_limited")["detail"]
            )
            assert int(same_key.headers["retry-after"]) >= 1
            third_key = await bounded.simulate(c, keys.approver)
            body = assert_problem(third_key, 429, "rate_limited")
            assert "ENGAGE_HEAVY_MAX_PER_SERVICE" in body["detail"]
            assert int(third_key.headers["retry-after"]) >= 1
        # Once the lock is gone both finish, and the places are free again.
        assert (await first).status_code == 200 and (await second).status_code == 200
        assert (await bounded.simulate(c, keys.approver)).status_code == 200
        metrics = (await c.get("/metrics")).text
        assert 'engage_heavy_requests_refused_total{kind="simulation",limit="key"' in metrics


async def test_a_client_that_disconnects_cancels_the_simulation_and_its_query(
    bounded: Bounded, keys: Keys
) -> None:
    async with user_days_locked(bounded.database_url):
        async with httpx.AsyncClient(base_url=bounded.rewards.url, timeout=60) as c:
            waiting = asyncio.ensure_future(bounded.simulate(c, keys.viewer))

            async def running() -> bool:
                return await queries_on_user_day(bounded.database_url) == 1

            await wait_for(running, "the simulation waiting on user_day")
            waiting.cancel()  # the client gives up: its connection closes
            await asyncio.gather(waiting, return_exceptions=True)

        async def cancelled() -> bool:
            return await queries_on_user_day(bounded.database_url) == 0

        # The lock is still held: only a cancellation ends the query.
        await wait_for(cancelled, "no query of the abandoned simulation left", deadline_s=10)
    async with httpx.AsyncClient(base_url=bounded.rewards.url, timeout=30) as c:
        # Its place at the gate was given back.
        assert (await bounded.simulate(c, keys.viewer)).status_code == 200


async def test_a_simulation_over_its_time_limit_is_cancelled_with_503(
    stack: Stack, bounded: Bounded, keys: Keys
) -> None:
    rewards = start_bounded(stack, "-bounded-timeout", REWARDS_SIMULATION_TIMEOUT_S="1")
    try:
        await wait_keys_known(rewards.url, "/v1/templates", [keys.viewer])
        async with (
            user_days_locked(bounded.database_url),
            httpx.AsyncClient(base_url=rewards.url, timeout=60) as c,
        ):
            r = await bounded.simulate(c, keys.viewer)
            body = assert_problem(r, 503, "simulation_timeout")
            assert "REWARDS_SIMULATION_TIMEOUT_S" in body["detail"] and r.headers["retry-after"]

            async def cancelled() -> bool:
                return await queries_on_user_day(bounded.database_url) == 0

            await wait_for(cancelled, "no query of the timed-out simulation left", deadline_s=10)
    finally:
        rewards.stop()


async def test_a_simulation_that_outlasts_the_body_read_timeout_is_still_answered(
    stack: Stack, bounded: Bounded, keys: Keys
) -> None:
    """The body read timeout wraps every `receive` of a request, the disconnect checks of a
    running simulation too: those must not turn a long simulation's answer into a 408."""
    rewards = start_bounded(stack, "-bounded-body", ENGAGE_BODY_READ_TIMEOUT_S="6")
    try:
        await wait_keys_known(rewards.url, "/v1/templates", [keys.viewer])
        async with httpx.AsyncClient(base_url=rewards.url, timeout=60) as c:
            async with user_days_locked(bounded.database_url):
                waiting = asyncio.ensure_future(bounded.simulate(c, keys.viewer))
                await asyncio.sleep(0)

                async def outlasted() -> bool:
                    return waiting.done() or time.monotonic() > started + 8

                started = time.monotonic()
                await wait_for(outlasted, "8 s of simulation")
            r = await waiting
            assert r.status_code == 200, r.text
    finally:
        rewards.stop()


async def test_reports_share_the_gate_and_run_under_the_statement_timeout(
    stack: Stack, bounded: Bounded, keys: Keys
) -> None:
    """The campaign report is an expensive request too: one per key at a time (a simulation
    of the same key meanwhile is refused as well), and its own units of work run under the
    API's statement timeout: a report stuck behind a lock is cancelled with 503."""
    rewards = start_bounded(stack, "-bounded-report", ENGAGE_API_STATEMENT_TIMEOUT_S="2")
    report = f"/v1/campaigns/{bounded.campaign_id}/report"
    viewer = {"Authorization": f"Bearer {keys.viewer}"}
    try:
        await wait_keys_known(rewards.url, "/v1/templates", [keys.viewer])
        async with (
            httpx.AsyncClient(base_url=rewards.url, timeout=60) as c,
            locked(bounded.database_url, "campaigns"),
        ):
            stuck = asyncio.ensure_future(c.get(report, headers=viewer))

            async def waiting() -> bool:
                return await queries_on_user_day(bounded.database_url, "%FROM campaigns%") >= 1

            await wait_for(waiting, "the report waiting on campaigns")
            assert_problem(await c.get(report, headers=viewer), 429, "rate_limited")
            assert_problem(await bounded.simulate(c, keys.viewer), 429, "rate_limited")
            body = assert_problem(await stuck, 503, "statement_timeout")
            assert "ran longer than 2 s" in body["detail"]
        async with httpx.AsyncClient(base_url=rewards.url, timeout=60) as c:
            assert (await c.get(report, headers=viewer)).status_code == 200
    finally:
        rewards.stop()
