"""Prize integrity in scoring through a real broker and PostgreSQL (SPEC §14): group facts are
not rewritten, and each anomaly flag fires on its planted rigger among 2,000 ordinary simulated
users — the false positives are printed (there should be none).

Envelopes go straight onto engage.events.v1 with the authority ingest would stamp, so these
tests do not depend on ingest's own checks (defense in depth: scoring refuses by itself).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from engage.progress import wait_outbox_empty
from engage.simulator.world import SimConfig, World, generate
from engage.stack import ServiceProcess, Stack
from engage.topic_audit import latest_values
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.contract import Authority, encode_envelope
from shared.topics import EVENTS_TOPIC, METRICS_TOPIC
from tests.builders import make_event
from tests.integration.test_scoring_reference import wait_processed

pytestmark = pytest.mark.asyncio
TZ = ZoneInfo("Asia/Shanghai")
MONTH = "2026-10"
START = date(2026, 10, 22)
END = datetime(2026, 11, 1, tzinfo=TZ)
SERVER_TYPES = {"points", "bonus_card", "group_created", "group_dissolved", "group_owner_changed"}


def local(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 10, day, hour, minute, second, tzinfo=TZ)


def heard(event: dict[str, Any]) -> str:
    return (datetime.fromisoformat(event["occurred_at"]) + timedelta(seconds=1)).isoformat()


@dataclass
class Env:
    stack: Stack
    scoring: ServiceProcess
    viewer: str
    sent: int = 0

    async def send(self, items: list[tuple[dict[str, Any], Authority, str]]) -> None:
        """Produce (event, authority, source) envelopes and wait until scoring processed them."""
        assert self.stack.kafka_bootstrap
        producer = AIOKafkaProducer(
            bootstrap_servers=self.stack.kafka_bootstrap, acks="all", linger_ms=20
        )
        await producer.start()
        try:
            # Received a second after it occurred, as live traffic is: when a client's join was
            # heard matters (late_joins), and this month of October was live then.
            futures = [
                await producer.send(
                    EVENTS_TOPIC,
                    encode_envelope(event, heard(event), source, authority),
                    key=event["user_id"].encode(),
                )
                for event, authority, source in items
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        self.sent += len({e["event_id"] for e, _, _ in items})
        await wait_processed(self.stack, "scoring", self.sent, timeout_s=300)

    def client(self) -> httpx.AsyncClient:
        auth = {"Authorization": f"Bearer {self.viewer}"}
        return httpx.AsyncClient(base_url=self.scoring.url, timeout=30, headers=auth)


@pytest.fixture(scope="module")
def integrity_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(var_dir=Path(tmp_path_factory.mktemp("integrity")), fixed_ports=False)
    stack.start_infra()
    try:
        stack.start_service("scoring", env={"SCORING_CHANGELOG_INTERVAL_S": "0.2"})
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
async def env(integrity_stack: Stack) -> AsyncIterator[Env]:
    url, bootstrap = integrity_stack.database_url, integrity_stack.kafka_bootstrap
    assert url and bootstrap
    viewer = (await issue_api_key(url, "view", [Role.VIEWER], 1e6, bootstrap)).secret
    yield Env(integrity_stack, integrity_stack.services["scoring"], viewer)


async def scoring_rows(stack: Stack, sql: str) -> list[asyncpg.Record]:
    assert stack.database_url
    conn = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""))
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def metric(env: Env, name: str, label: str) -> float:
    async with httpx.AsyncClient(base_url=env.scoring.url) as c:
        text = (await c.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{label}}} not exposed")


# -- group facts -----------------------------------------------------------------------------


def ev(kind: str, user: str, at: datetime, **kw: Any) -> dict[str, Any]:
    return make_event(kind, user_id=user, at=at, **kw)


async def group_month(env: Env, group_id: str) -> dict[str, Any]:
    async with env.client() as c:
        r = await c.get(f"/v1/groups/{group_id}/months/{MONTH}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_backdated_second_group_created_changes_nothing(env: Env) -> None:
    created = ev(
        "group_created", "gf-owner", local(10), group_id="gf-1", name="Real", province="GD"
    )
    await env.send([(created, "platform", "platform-key")])
    hijack = ev("group_created", "gf-thief", local(2), group_id="gf-1", name="Mine", province="BJ")
    await env.send([(hijack, "platform", "platform-key")])
    g = await group_month(env, "gf-1")
    assert (g["owner_id"], g["name"], g["province"]) == ("gf-owner", "Real", "GD")
    async with env.client() as c:
        members = (await c.get(f"/v1/groups/gf-1/months/{MONTH}/members")).json()["items"]
    assert members == ["gf-owner"]  # the refused creation is not the thief's join either
    rows = await scoring_rows(
        env.stack,
        f"SELECT reason FROM scoring.refused_events WHERE event_id = '{hijack['event_id']}'",
    )
    assert [r["reason"] for r in rows] == ["group_already_created"]
    assert await metric(env, "engage_scoring_refused_events_total", "group_already_created") >= 1


async def test_a_strangers_dissolution_is_refused_the_owners_stands(env: Env) -> None:
    await env.send(
        [
            (ev("group_created", "gf-o2", local(10), group_id="gf-2"), "platform", "platform-key"),
            (ev("group_created", "gf-o3", local(10), group_id="gf-3"), "platform", "platform-key"),
        ]
    )
    stranger = ev("group_dissolved", "gf-stranger", local(11), group_id="gf-2")
    own = ev("group_dissolved", "gf-o3", local(11), group_id="gf-3")
    relay = ev("group_dissolved", "gf-o2", local(11), group_id="gf-2")
    await env.send(
        [
            (stranger, "user", "user:gf-stranger"),
            (own, "user", "user:gf-o3"),
            (relay, "relay", "relay-key"),
        ]
    )
    assert (await group_month(env, "gf-2"))["dissolved"] is False
    assert (await group_month(env, "gf-3"))["dissolved"] is True
    rows = await scoring_rows(
        env.stack, "SELECT event_id, reason FROM scoring.refused_events ORDER BY event_id"
    )
    reasons = {r["event_id"]: r["reason"] for r in rows}
    assert reasons[stranger["event_id"]] == "not_group_owner"
    assert reasons[relay["event_id"]] == "authority_not_allowed"
    assert own["event_id"] not in reasons


async def test_owner_transfer_applies_from_platform_only_and_is_published(env: Env) -> None:
    await env.send(
        [(ev("group_created", "gf-o4", local(10), group_id="gf-4"), "platform", "platform-key")]
    )
    by_user = ev("group_owner_changed", "gf-thief", local(11), group_id="gf-4")
    await env.send([(by_user, "user", "user:gf-thief")])
    assert (await group_month(env, "gf-4"))["owner_id"] == "gf-o4"
    by_platform = ev("group_owner_changed", "gf-heir", local(12), group_id="gf-4")
    await env.send([(by_platform, "platform", "platform-key")])
    assert (await group_month(env, "gf-4"))["owner_id"] == "gf-heir"
    assert env.stack.database_url and env.stack.kafka_bootstrap
    await wait_outbox_empty(env.stack.database_url, "scoring", "changelog_outbox", 60)
    published = await latest_values(env.stack.kafka_bootstrap, METRICS_TOPIC, 60)
    assert published[f"group:gf-4:{MONTH}"]["owner_id"] == "gf-heir"


async def test_points_and_bonus_cards_from_a_user_token_or_relay_change_nothing(env: Env) -> None:
    points = ev("points", "gf-cheat", local(12), delta=100_000)
    bonus = ev("bonus_card", "gf-cheat", local(12), group_id="gf-1", points=10_000)
    await env.send([(points, "user", "user:gf-cheat"), (bonus, "relay", "relay-key")])
    assert (await group_month(env, "gf-1"))["bonus_points"] == 0
    async with env.client() as c:
        r = await c.get(f"/v1/users/gf-cheat/days/{local(12).date().isoformat()}")
    assert r.status_code == 404  # nothing of the user was applied: scoring never saw them


# -- anomaly flags among ordinary users --------------------------------------------------------


def ordinary_traffic() -> list[tuple[dict[str, Any], Authority, str]]:
    """2,000 simulated users for the last 10 days of October: client events through one relay
    key (so lockstep sees a shared source), server events through a platform key."""
    world = World.build(SimConfig(seed=17, users=2000, groups=120))
    out: list[tuple[dict[str, Any], Authority, str]] = []
    for e in generate(world, START, END):
        if e["type"] in SERVER_TYPES:
            out.append((e, "platform", "platform-sim"))
        else:
            out.append((e, "relay", "relay-sim"))
    return out


def riggers() -> list[tuple[dict[str, Any], Authority, str]]:
    out: list[tuple[dict[str, Any], Authority, str]] = []
    relay: tuple[Authority, str] = ("relay", "relay-sim")
    platform: tuple[Authority, str] = ("platform", "platform-sim")
    # A message bot: 300 messages in three minutes on the 25th.
    for i in range(300):
        out.append((ev("message", "rig-bot", local(25, 9, 0, 0) + timedelta(seconds=i * 0.6),
                       client="mobile", to_user_id="u000001"), *relay))  # fmt: skip
    # A points farmer: 50 points a day, then 60,000 on the 27th.
    for day in range(22, 27):
        out.append((ev("points", "rig-farmer", local(day), delta=50), *platform))
    out.append((ev("points", "rig-farmer", local(27), delta=60_000), *platform))
    # A group whose members all join on the 28th.
    out.append((ev("group_created", "rig-late-owner", local(22), group_id="rig-late",
                   name="Late", province="GD"), *platform))  # fmt: skip
    for i in range(30):
        out.append((ev("group_join", f"u{i + 100:06d}", local(28, 10, i), group_id="rig-late"),
                    *relay))  # fmt: skip
    # A group carried by one member: 600 points a day from the 22nd, eight quiet members.
    out.append((ev("group_created", "rig-star", local(22), group_id="rig-dom", name="Star",
                   province="SD"), *platform))  # fmt: skip
    for i in range(8):
        out.append((ev("group_join", f"u{i + 300:06d}", local(22, 13), group_id="rig-dom"),
                    *relay))  # fmt: skip
    for day in range(22, 32):
        out.append((ev("points", "rig-star", local(day, 9), delta=600), *platform))
    # Lockstep: eight accounts, 30 messages each at the same seconds, through one relay key.
    for k in range(8):
        for i in range(30):
            out.append((ev("message", f"rig-ring{k}", local(26, 20, i, 7), client="pc",
                           to_user_id="u000002"), "relay", "relay-farm"))  # fmt: skip
    return out


PLANTED = {
    "message_rate": {"user:rig-bot:2026-10-25"},
    "points_spike": {"user:rig-farmer:2026-10-27"},
    "lockstep": {f"user:rig-ring{k}:2026-10-26" for k in range(8)},
    "late_joins": {f"group:rig-late:{MONTH}"},
    "dominant_member": {f"group:rig-dom:{MONTH}"},
}


async def test_each_flag_fires_on_its_rigger_and_on_no_ordinary_user(env: Env) -> None:
    traffic = ordinary_traffic() + riggers()
    started = time.monotonic()
    await env.send(traffic)
    assert env.stack.database_url and env.stack.kafka_bootstrap
    await wait_outbox_empty(env.stack.database_url, "scoring", "changelog_outbox", 300)
    published = await latest_values(env.stack.kafka_bootstrap, METRICS_TOPIC, 120)
    flagged: dict[str, set[str]] = defaultdict(set)
    for key, record in published.items():
        for flag in record.get("flags", []):
            flagged[flag["name"]].add(key)
            assert flag["reason"] and flag["values"], flag
    users = {e["user_id"] for e, _, _ in traffic}
    print(
        f"\n{len(traffic):,} events of {len(users):,} users in "
        f"{time.monotonic() - started:.1f}s; {len(published):,} records published"
    )
    for name, planted in PLANTED.items():
        hits = flagged[name] & planted
        false_positives = sorted(flagged[name] - planted)
        print(
            f"  {name}: {len(hits)}/{len(planted)} riggers flagged, "
            f"{len(false_positives)} false positives {false_positives[:10]}"
        )
    for name, planted in PLANTED.items():
        assert flagged[name] >= planted, f"{name}: missed {sorted(planted - flagged[name])}"
        assert flagged[name] == planted, f"{name}: false positives"

    # Reads show the same flags: a user's day, a group's month, the leaderboard.
    async with env.client() as c:
        day = (await c.get("/v1/users/rig-bot/days/2026-10-25")).json()
        assert [f["name"] for f in day["flags"]] == ["message_rate"]
        month = (await c.get(f"/v1/groups/rig-late/months/{MONTH}")).json()
        assert [f["name"] for f in month["flags"]] == ["late_joins"]
        board = (await c.get(f"/v1/leaderboards/{MONTH}/SD", params={"limit": 500})).json()
        entry = next(i for i in board["items"] if i["group_id"] == "rig-dom")
        assert [f["name"] for f in entry["flags"]] == ["dominant_member"]
        quiet = (await c.get("/v1/users/u000005/days/2026-10-25")).json()
        assert quiet["flags"] == []
    for name in PLANTED:
        assert await metric(env, "engage_anomaly_flags_total", f'flag="{name}"') >= 1


async def test_a_late_event_republishes_the_days_it_flags(env: Env) -> None:
    """A backdated small day before the farmer's spike changes its history: still a spike, and
    its record was republished from stored state (the flag's values moved)."""
    assert env.stack.database_url and env.stack.kafka_bootstrap
    await env.send([(ev("points", "rig-farmer", local(21), delta=700), "platform", "import")])
    await wait_outbox_empty(env.stack.database_url, "scoring", "changelog_outbox", 60)
    published = await latest_values(env.stack.kafka_bootstrap, METRICS_TOPIC, 60)
    (flag,) = published["user:rig-farmer:2026-10-27"]["flags"]
    assert flag["values"]["history_daily_mean"] == round((5 * 50 + 700) / 28, 2)
