"""Rewards settlement benchmark, beside a reference measured in the same run.

    bash bench/run.sh rewards [--groups 100000] [--users 1000000] [--records 200000]
                              [--parts settle,consume]

settle

A month with ≥ 100,000 groups and 1,000,000 users is bulk-loaded into rewards' metric tables
(the values engage.metrics.v1 would have delivered): every group has ≥ 3 members, sizes are
skewed (a few thousand groups of 25 to several hundred), every user is in one group and one in
ten in a second one (so "effective" members matter); every group is enrolled in two campaigns. Then
POST /v1/settlements:run settles the month's period-end rules of three campaigns:
  my_fetion_my_group   rank: top 20 per province over 100k groups, prize + a ticket per member
  tribe_chief          scaled: effective active members over every enrolled group
  new_friend_draw      lottery: a ticket per friend added, 20,000 winners, entries frozen
Reference: reading the same inputs raw (asyncpg, every group-month and user-month row of the
month) — the floor any settlement has to pay. Figures are printed as seconds and as ratios.

consume
A metrics topic pre-loaded with user-day records (as scoring's changelog publishes them) for
users of whom many qualify; two threshold campaigns (play_and_get_gifts, invite_friends) are
live. Time for rewards to apply every record (snapshots + thresholds + grants + offsets), beside
(a) a bare aiokafka consumer decoding the same records — the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson

from bench.bench_scoring import raw_consume_rate
from engage.demo_campaigns import CampaignKeys, campaign_window, launch_campaigns
from engage.progress import wait_consumed, wait_keys_known
from engage.stack import Stack
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.contract import PROVINCES
from shared.kafka import make_producer
from shared.topics import METRICS_TOPIC

TZ = ZoneInfo("Asia/Shanghai")

OUT = Path(__file__).parent / "out"
CAMPAIGNS = ("my_fetion_my_group", "tribe_chief", "new_friend_draw")


def row(label: str, *cells: str) -> None:
    print(f"  {label:<44}" + "".join(f"{c:>16}" for c in cells))


async def bulk_load(database_url: str, month: Any, groups: int, users: int) -> None:
    """Synthetic rows straight into rewards' tables (schema rewards)."""
    created = datetime.now(UTC) - timedelta(days=90)
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        await conn.execute("SET search_path = rewards")
        await conn.execute(
            """
            INSERT INTO user_month (user_id, month, metrics)
            SELECT 'U' || i, $1::date, jsonb_build_object(
                'messages', CASE WHEN i % 10 < 8 THEN (i * 7) % 300 + 1 ELSE 0 END,
                'active', CASE WHEN i % 10 < 8 THEN 1 ELSE 0 END,
                'activity_points', (i * 11) % 400, 'points_delta', (i * 19) % 1000 - 300,
                'friends_added', i % 3, 'checkins', i % 20, 'active_days', i % 30)
            FROM generate_series(0, $2 - 1) i""",
            month,
            users,
        )
        await conn.execute(
            """
            CREATE TEMP TABLE members AS
            SELECT 'G' || CASE WHEN i < 3 * $1 THEN i % $1
                    ELSE floor($1 * power(((i * 2654435761) % 1000003) / 1000003.0, 2))::int
                    END AS g,
                   'U' || i AS u
            FROM generate_series(0, $2 - 1) i
            UNION
            SELECT 'G' || ((i * 7 + 3) % $1), 'U' || i FROM generate_series(0, $2 - 1, 10) i""",
            groups,
            users,
        )
        await conn.execute(
            """
            INSERT INTO group_month (group_id, month, metrics, owner_id, province, created_at,
                                     member_ids)
            SELECT m.g, $1::date, jsonb_build_object(
                    'members', count(*),
                    'active_members', count(*) FILTER (WHERE (um.metrics->>'active')::int = 1),
                    'activity_points', sum((um.metrics->>'activity_points')::int),
                    'points_growth', sum((um.metrics->>'points_delta')::int),
                    'bonus_points', hashtext(m.g) & 1023, 'group_messages', 0),
                min(m.u), ($2::text[])[1 + abs(hashtext(m.g)) % 34], $3::timestamptz,
                jsonb_agg(m.u ORDER BY m.u)
            FROM members m JOIN user_month um ON um.user_id = m.u AND um.month = $1::date
            GROUP BY m.g""",
            month,
            list(PROVINCES),
            created,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def enroll_all(database_url: str, campaign_ids: list[str]) -> None:
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        for cid in campaign_ids:
            await conn.execute(
                "INSERT INTO rewards.enrollments (campaign_id, group_id, owner_id, enrolled_by) "
                "SELECT $1, group_id, owner_id, 'bench' FROM rewards.group_month",
                cid,
            )
    finally:
        await conn.close()


async def raw_read(database_url: str, month: Any) -> float:
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        t = time.perf_counter()
        await conn.fetch(
            "SELECT group_id, metrics, owner_id, province, created_at, dissolved_at, member_ids "
            "FROM rewards.group_month WHERE month = $1",
            month,
        )
        await conn.fetch("SELECT user_id, metrics FROM rewards.user_month WHERE month = $1", month)
        return time.perf_counter() - t
    finally:
        await conn.close()


async def settle(groups: int, users: int, results: dict[str, Any]) -> None:
    stack = Stack(var_dir=OUT / "var-rewards", fixed_ports=False).start_infra()
    try:
        url, bootstrap = stack.database_url, stack.kafka_bootstrap
        assert url and bootstrap
        stack.start_service("ingest")
        rewards = stack.start_service(
            "rewards", env={"REWARDS_SETTLE_INTERVAL_S": "0", "REWARDS_CATCH_UP_TIMEOUT_S": "600"}
        )

        async def key(name: str, role: Role) -> str:
            return (await issue_api_key(url, name, [role], 1e9, bootstrap)).secret

        keys = CampaignKeys(
            await key("owner", Role.CAMPAIGN_OWNER),
            await key("approver", Role.APPROVER),
            await key("admin", Role.ADMIN),
        )
        await wait_keys_known(rewards.url, "/v1/templates", list(vars(keys).values()))
        now = datetime.now(UTC)
        starts_at, ends_at = campaign_window(now, TZ)
        month = starts_at.date()
        t = time.perf_counter()
        await bulk_load(url, month, groups, users)
        print(
            f"  bulk-loaded {groups:,} groups and {users:,} users in {time.perf_counter() - t:.0f}s"
        )
        ids: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=rewards.url, timeout=3600) as c:
            own = {"Authorization": f"Bearer {keys.owner}"}
            for template in CAMPAIGNS:
                r = await c.post(
                    "/v1/campaigns",
                    json={"template": template, "starts_at": starts_at.isoformat(),
                          "ends_at": ends_at.isoformat()},
                    headers=own,
                )  # fmt: skip
                cid = r.json()["campaign_id"]
                ids[template] = cid
                await c.post(f"/v1/campaigns/{cid}/versions/1:submit", headers=own)
                await c.post(
                    f"/v1/campaigns/{cid}/versions/1:approve",
                    headers={"Authorization": f"Bearer {keys.approver}"},
                )
                (await c.post(f"/v1/campaigns/{cid}:activate", headers=own)).raise_for_status()
            await enroll_all(url, [ids["my_fetion_my_group"], ids["tribe_chief"]])
            reference = min([await raw_read(url, month) for _ in range(3)])
            t = time.perf_counter()
            r = await c.post(
                "/v1/settlements:run", headers={"Authorization": f"Bearer {keys.admin}"}
            )
            wall = time.perf_counter() - t
            r.raise_for_status()
        settled = {s["campaign_id"]: s for s in r.json()["settled"]}
        row(f"settlement, {groups:,} groups / {users:,} users", "seconds", "grants", "× raw read")
        row("  reference: raw read of the month's inputs", f"{reference:.2f}", "", "1.00")
        measured = {}
        for template in CAMPAIGNS:
            s = settled[ids[template]]
            measured[template] = {"seconds": s["seconds"], "grants": s["grants"]}
            row(f"  {template}", f"{s['seconds']:.2f}", f"{s['grants']:,}",
                f"{s['seconds'] / reference:.1f}")  # fmt: skip
        row("  POST /v1/settlements:run (all three)", f"{wall:.2f}", "", f"{wall / reference:.1f}")
        results["settle"] = {
            "groups": groups,
            "users": users,
            "reference_raw_read_s": reference,
            "wall_s": wall,
            **measured,
        }
    finally:
        stack.stop()


def user_day_records(n: int, users: int, month_first: Any) -> list[tuple[bytes, bytes]]:
    """(key, value) like scoring's changelog: a user's days, latest values, some qualifying."""
    out = []
    for i in range(n):
        user, day = f"U{i % users}", month_first + timedelta(days=(i // users) % 28)
        doc = {
            "entity": "user", "id": user, "period": day.isoformat(), "grain": "day",
            "messages": i % 30, "messages_sms": 0, "messages_mobile": i % 3,
            "online_seconds_pc": (i * 37) % 7200, "online_seconds_mobile": 0,
            "points_delta": 0, "friends_added": i % 2, "checkins": i % 2, "logins": 1,
            "online_points": 2, "message_points": min(i % 30, 20),
            "activity_points": 2 + min(i % 30, 20),
        }  # fmt: skip
        out.append((f"user:{user}:{day.isoformat()}".encode(), orjson.dumps(doc)))
    return out


async def consume(records: int, results: dict[str, Any]) -> None:
    stack = Stack(var_dir=OUT / "var-rewards-consume", fixed_ports=False).start_infra()
    try:
        url, bootstrap = stack.database_url, stack.kafka_bootstrap
        assert url and bootstrap
        stack.start_service("ingest")
        env = {"REWARDS_SETTLE_INTERVAL_S": "0"}
        setup = stack.start_service("rewards", env=env | {"REWARDS_CONSUME": "false"})

        async def key(name: str, role: Role) -> str:
            return (await issue_api_key(url, name, [role], 1e9, bootstrap)).secret

        keys = CampaignKeys(
            await key("owner", Role.CAMPAIGN_OWNER),
            await key("approver", Role.APPROVER),
            await key("admin", Role.ADMIN),
        )
        await wait_keys_known(setup.url, "/v1/templates", list(vars(keys).values()))
        starts_at, ends_at = campaign_window(datetime.now(UTC), TZ)
        await launch_campaigns(
            setup.url, keys, starts_at, ends_at, ("play_and_get_gifts", "invite_friends")
        )
        setup.stop()
        payloads = user_day_records(records, records // 4, starts_at.date())
        producer = make_producer(bootstrap, "bench-preload")
        await producer.start()
        try:
            for i in range(0, len(payloads), 10_000):
                futures = [
                    await producer.send(METRICS_TOPIC, v, key=k)
                    for k, v in payloads[i : i + 10_000]
                ]
                for f in futures:
                    await f
        finally:
            await producer.stop()
        raw = await raw_consume_rate(bootstrap, records, METRICS_TOPIC)
        t = time.perf_counter()
        stack.start_service("rewards", instance="-consume", env=env)
        await wait_consumed(url, bootstrap, "rewards", METRICS_TOPIC, timeout_s=3600)
        seconds = time.perf_counter() - t
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            grants = int(await conn.fetchval("SELECT count(*) FROM rewards.grants"))
        finally:
            await conn.close()
        rate = records / seconds
        row(f"metrics consumption, {records:,} user-day records", "records/s", "grants", "ratio")
        row("  (a) raw aiokafka consume + decode", f"{raw:,.0f}", "", "1.00")
        row("  rewards (incl. start-up), two threshold campaigns", f"{rate:,.0f}", f"{grants:,}",
            f"{rate / raw:.3f}")  # fmt: skip
        results["consume"] = {
            "records": records,
            "raw_per_s": raw,
            "rewards_per_s": rate,
            "seconds": seconds,
            "grants": grants,
        }
    finally:
        stack.stop()


async def main(groups: int, users: int, records: int, parts: list[str]) -> None:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    print(f"\nRewards benchmark — {results['date']} — {results['machine']}")
    if "settle" in parts:
        await settle(groups, users, results)
    if "consume" in parts:
        await consume(records, results)
    OUT.mkdir(exist_ok=True)
    (OUT / f"rewards-{results['date'][:10]}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--parts", default="settle,consume")
    args = parser.parse_args()
    asyncio.run(main(args.groups, args.users, args.records, args.parts.split(",")))
