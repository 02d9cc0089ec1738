"""A backtest holds out whom live settlement holds out (SPEC §12 Holdouts, §9; issue 16).

A daily draw with room for everyone and `holdout_percent: 10`, over two past days of stored
metrics in a rewards of its own (its own schema on the shared stack, no consumers). Before the
campaign is activated the simulation uses a public stand-in seed and says so; once activated, it
marks `held_out` exactly the users whose HMAC-SHA256(committed seed, user id) falls in the
lowest 10% — recomputed here from the seed in the database, not by the code under test — with
no budget or money for them; a version holding out 20% compared with it changes only the newly
held-out users; and live settlement of the same days (the settlement use case, run once the
service is stopped so no grant leaves for the shared broker) records the same statuses.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from engage.progress import wait_keys_known
from engage.stack import ServiceProcess, Stack
from services.rewards.domain.retry import Backoff
from services.rewards.usecases.settlement import settle_due
from shared.db import make_engine, make_sessionmaker
from tests.integration.conftest import Keys

pytestmark = pytest.mark.asyncio
TZ = ZoneInfo("Asia/Shanghai")
SCHEMA = "rewards_sim_holdout"
PERCENT = 10
POINTS = 10
TODAY = datetime.now(TZ).date()
FIRST, LAST = TODAY - timedelta(days=3), TODAY - timedelta(days=2)  # both past the grace
USERS = [f"h{i:03d}" for i in range(300)]
CHECKED_IN = {FIRST: USERS, LAST: USERS[:200]}  # who has `checkins: 1` on each day


def held_out(seed: str, user: str, percent: int) -> bool:
    """SPEC §12 membership, written out again: the digest as a big-endian number, lowest %."""
    digest = hmac.new(seed.encode(), user.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest, "big") * 100 < percent * 2**256


def expected(seed: str, percent: int = PERCENT) -> dict[tuple[str, str], str]:
    return {
        (u, day.isoformat()): "held_out" if held_out(seed, u, percent) else "granted"
        for day, users in CHECKED_IN.items()
        for u in users
    }


def definition(percent: int = PERCENT) -> dict[str, Any]:
    start = datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=TZ)
    return {
        "name": "Daily check-in draw with a holdout",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(days=14)).isoformat(),
        "holdout_percent": percent,
        "unit_prices": {"points": 1},
        "budgets": {"points": 1_000_000},
        "rules": [
            {
                "kind": "lottery",
                "id": "daily",
                "period": "day",
                "eligibility": {"metric": "user.day.checkins", "op": ">=", "value": 1},
                "winners": 1000,  # room for every entrant: who wins does not depend on a seed
                "rewards": [{"kind": "points", "amount": POINTS}],
            }
        ],
    }


@dataclass(frozen=True)
class Env:
    rewards: ServiceProcess
    database_url: str  # SQLAlchemy's form
    keys: Keys

    def client(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.rewards.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )


async def load_user_days(url: str) -> None:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        for day, users in CHECKED_IN.items():
            await conn.execute(
                f"INSERT INTO {SCHEMA}.user_day (user_id, day, metrics) "
                "SELECT u, $1::date, jsonb_build_object('checkins', 1) FROM unnest($2::text[]) u",
                day,
                users,
            )
    finally:
        await conn.close()


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def env(stack: Stack, keys: Keys) -> AsyncIterator[Env]:
    assert stack.database_url
    rewards = stack.start_service(
        "rewards",
        instance="-sim-holdout",
        env={
            "REWARDS_SCHEMA_NAME": SCHEMA,
            "REWARDS_CONSUME": "false",
            "REWARDS_SETTLE_INTERVAL_S": "0",
        },
    )
    try:
        await load_user_days(stack.database_url)
        await wait_keys_known(
            rewards.url, "/v1/templates", [keys.owner, keys.approver, keys.viewer]
        )
        yield Env(rewards, stack.database_url, keys)
    finally:
        rewards.stop()


async def simulate(env: Env, cid: str, version: int, **extra: Any) -> dict[str, Any]:
    async with env.client(env.keys.viewer) as viewer:
        r = await viewer.post(
            f"/v1/campaigns/{cid}/versions/{version}:simulate",
            json={"from": FIRST.isoformat(), "to": LAST.isoformat(), "sample": 1000, **extra},
        )
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def statuses(sample: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {(g["user_id"], g["period"]): g["status"] for g in sample}


def check_counts(doc: dict[str, Any], want: dict[tuple[str, str], str]) -> None:
    n_held = sum(s == "held_out" for s in want.values())
    n_granted = len(want) - n_held
    assert (doc["grants"], doc["granted"], doc["held_out"]) == (len(want), n_granted, n_held)
    assert doc["by_rule"] == {"daily": {"granted": n_granted, "held_out": n_held}}
    assert doc["units"] == {"points": POINTS * n_granted}  # held out: no units, no money
    assert doc["money_fen_total"] == POINTS * n_granted
    assert doc["budget_use"] == {"points": {"units": POINTS * n_granted, "budget": 1_000_000}}


async def test_a_backtest_holds_out_exactly_whom_live_settlement_holds_out(env: Env) -> None:
    async with env.client(env.keys.owner) as owner, env.client(env.keys.approver) as approver:
        r = await owner.post("/v1/campaigns", json={"definition": definition()})
        assert r.status_code == 201, r.text
        cid = r.json()["campaign_id"]

        # A draft never activated has no seed: a public stand-in, and the result says so.
        draft = await simulate(env, cid, 1)
        stand_in = hashlib.sha256(f"simulation:holdout:{cid}".encode()).hexdigest()
        assert draft["holdout"] == {
            "percent": PERCENT,
            "seed_source": "stand_in",
            "seed_sha256": hashlib.sha256(stand_in.encode()).hexdigest(),
        }
        assert statuses(draft["sample"]) == expected(stand_in)
        no_seed = await fetch(
            env.database_url, f"SELECT 1 FROM {SCHEMA}.holdout_seeds WHERE campaign_id = $1", cid
        )
        assert no_seed == []  # the READ ONLY simulation chose none

        assert (await owner.post(f"/v1/campaigns/{cid}/versions/1:submit")).status_code == 200
        assert (await approver.post(f"/v1/campaigns/{cid}/versions/1:approve")).is_success
        assert (await owner.post(f"/v1/campaigns/{cid}:activate")).status_code == 200
        [row] = await fetch(
            env.database_url,
            f"SELECT seed, seed_sha256 FROM {SCHEMA}.holdout_seeds WHERE campaign_id = $1",
            cid,
        )
        seed = row["seed"]
        assert hashlib.sha256(seed.encode()).hexdigest() == row["seed_sha256"]
        want = expected(seed)
        assert 30 <= sum(s == "held_out" for s in want.values()) <= 80  # about 50 of 500

        # Activated: the committed seed, whose hash is the published one.
        live = await simulate(env, cid, 1)
        assert live["holdout"] == {
            "percent": PERCENT,
            "seed_source": "committed",
            "seed_sha256": row["seed_sha256"],
        }
        assert seed not in str(live)
        assert statuses(live["sample"]) == want
        check_counts(live, want)

        # A draft holding out 20% against the live version: one seed, so only the users the
        # wider share adds move from granted to held_out.
        wider = definition(percent=2 * PERCENT)
        r = await owner.put(f"/v1/campaigns/{cid}/draft", json=wider)
        assert r.status_code == 200, r.text
        v2 = r.json()["versions"][-1]["version"]
        compared = await simulate(env, cid, v2, against=1)
        assert compared["holdout"]["seed_source"] == "committed"
        assert compared["against"]["holdout"]["percent"] == PERCENT
        assert statuses(compared["sample"]) == expected(seed, 2 * PERCENT)
        newly = {k for k, s in expected(seed, 2 * PERCENT).items() if s != want[k]}
        diff = compared["diff"]
        assert (diff["added"], diff["removed"], diff["changed"]) == (0, 0, len(newly))
        assert {(c["candidate"]["user_id"], c["candidate"]["period"])
                for c in diff["changed_sample"]} == newly  # fmt: skip

    # Live settlement of the same days, with no service left to relay grants to the broker.
    env.rewards.stop()
    engine = make_engine(env.database_url, SCHEMA)
    try:

        async def caught_up() -> bool:
            return True  # no consumer here: the stored metrics are all there is

        run = await settle_due(
            make_sessionmaker(engine), TZ, lambda: datetime.now(UTC), Backoff(), caught_up
        )
    finally:
        await engine.dispose()
    assert not run.failed
    assert {s.period for s in run.settled if s.campaign_id == cid} >= {
        FIRST.isoformat(),
        LAST.isoformat(),
    }
    rows = await fetch(
        env.database_url,
        f"SELECT user_id, period, status FROM {SCHEMA}.grants WHERE campaign_id = $1",
        cid,
    )
    settled = {(r["user_id"], r["period"]): r["status"] for r in rows}
    assert settled == statuses(live["sample"]) == want
    [spent] = await fetch(
        env.database_url,
        f"SELECT spent FROM {SCHEMA}.budgets WHERE campaign_id = $1 AND kind = 'points'",
        cid,
    )
    assert spent["spent"] == live["budget_use"]["points"]["units"]


async def test_the_reference_membership_is_the_published_rule() -> None:
    """The test's own membership reads the digest as SPEC §12 says (a sanity check on it)."""
    assert held_out("s", "u", 100) and not held_out("s", "u", 0)
    share = sum(held_out("seed", f"x{i}", PERCENT) for i in range(5000)) / 5000
    assert 0.08 < share < 0.12
