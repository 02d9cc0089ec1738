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

backtest
A weekly threshold ("weekend chat boost": period week, days_of_week [6, 7],
user.period.messages_mobile >= 30, at most 5,000 winners a week) simulated over 93 days of
1,000,000 users (user-days bulk-loaded: each user active on about one day in eight) through
POST /v1/campaigns/{id}/versions/1:simulate — each day evaluated with the data up to that day,
streamed user by user. Time and the rewards process's peak RSS growth beside (a) a raw read of
the same rows (asyncpg cursor, same projection and order) in a fresh process: its time and
peak RSS.

consume
A metrics topic pre-loaded with user-day records (as scoring's changelog publishes them) for
users of whom many qualify; two threshold campaigns (play_and_get_gifts, invite_friends) are
live. Time for rewards to apply every record (snapshots + thresholds + grants + offsets), beside
(a) a bare aiokafka consumer decoding the same records — the limit.

report
A campaign with 1,000,000 grants (bulk-loaded into the ledger: a monthly threshold and a daily
one over 30 days, 10% held out, a third fulfilled, a few budget_exhausted) and 1,000,000 users'
month metrics for the month and the next: GET /v1/campaigns/{id}/report (JSON: per rule and
period, funnel, uplift, budget use) timed beside (a) a raw `SELECT count(*)` of the same grant
rows — the floor of any answer that reads them. The ledger's triggers (migration 0009) count
the bulk load as it goes; the first report folds those counts (printed apart), the next read them.
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


async def bulk_load_days(database_url: str, first: Any, days: int, users: int) -> int:
    """User-days over `days` days from `first`: user i is active on days d with
    (i + d) % 8 == 0, with 0–59 mobile messages (about a third qualify on a weekend)."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        await conn.execute("SET search_path = rewards")
        await conn.execute(
            """
            INSERT INTO user_day (user_id, day, metrics, flags)
            SELECT 'U' || i, $1::date + d, jsonb_build_object(
                'messages', (i * 7 + d) % 60 + 1, 'messages_mobile', (i * 7 + d) % 60,
                'messages_sms', 0, 'online_seconds_pc', 0, 'online_seconds_mobile', 600,
                'points_delta', 0, 'friends_added', 0, 'checkins', 0, 'logins', 1,
                'online_points', 2, 'message_points', 20, 'activity_points', 22), '[]'::jsonb
            FROM generate_series(0, $2 - 1) d, generate_series(0, $3 - 1) i
            WHERE (i + d) % 8 = 0""",
            first,
            days,
            users,
        )
        await conn.execute("ANALYZE user_day")
        return int(await conn.fetchval("SELECT count(*) FROM user_day"))
    finally:
        await conn.close()


RAW_READ = """
import asyncio, resource, sys, time
from datetime import date
import asyncpg
async def main(url, first, last):
    first, last = date.fromisoformat(first), date.fromisoformat(last)
    conn = await asyncpg.connect(url)
    t = time.perf_counter(); n = 0
    async with conn.transaction():
        cur = conn.cursor(
            "SELECT user_id, day, COALESCE(CAST(metrics->>'messages_mobile' AS float8), 0) "
            "FROM rewards.user_day WHERE day BETWEEN $1::date AND $2::date "
            "ORDER BY user_id, day", first, last, prefetch=10000)
        async for _ in cur:
            n += 1
    print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
asyncio.run(main(*sys.argv[1:]))
"""


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def weekend_rule_definition(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    from services.rewards.domain.templates import weekend_chat_boost

    doc = weekend_chat_boost(starts_at, ends_at)
    return orjson.loads(orjson.dumps(doc))  # type: ignore[no-any-return]


async def backtest(users: int, results: dict[str, Any]) -> None:
    import subprocess
    import sys

    stack = Stack(var_dir=OUT / "var-rewards-backtest", fixed_ports=False).start_infra()
    try:
        url, bootstrap = stack.database_url, stack.kafka_bootstrap
        assert url and bootstrap
        stack.start_service("ingest")
        rewards = stack.start_service("rewards", env={"REWARDS_SETTLE_INTERVAL_S": "0"})

        async def key(name: str, role: Role) -> str:
            return (await issue_api_key(url, name, [role], 1e9, bootstrap)).secret

        owner = await key("owner", Role.CAMPAIGN_OWNER)
        await wait_keys_known(rewards.url, "/v1/templates", [owner])
        today = datetime.now(TZ).date()
        last = today - timedelta(days=1)
        first = last - timedelta(days=92)
        t = time.perf_counter()
        rows = await bulk_load_days(url, first, 93, users)
        print(f"  bulk-loaded {rows:,} user-days of {users:,} users in "
              f"{time.perf_counter() - t:.0f}s")  # fmt: skip
        starts_at = datetime(first.year, first.month, first.day, tzinfo=TZ)
        ends_at = datetime(today.year, today.month, today.day, tzinfo=TZ)
        doc = weekend_rule_definition(starts_at, ends_at)
        own = {"Authorization": f"Bearer {owner}"}
        async with httpx.AsyncClient(base_url=rewards.url, timeout=3600) as c:
            r = await c.post("/v1/campaigns", json={"definition": doc}, headers=own)
            r.raise_for_status()
            cid = r.json()["campaign_id"]
            rss_before = peak_rss_kb(rewards.proc.pid)
            t = time.perf_counter()
            r = await c.post(
                f"/v1/campaigns/{cid}/versions/1:simulate",
                json={"from": first.isoformat(), "to": last.isoformat(), "sample": 5},
                headers=own,
            )
            seconds = time.perf_counter() - t
            r.raise_for_status()
            rss_after = peak_rss_kb(rewards.proc.pid)
        sim = r.json()
        print(f"  simulated in {seconds:.1f}s: {sim['grants']:,} grants {sim['by_rule']}; "
              f"rewards peak RSS {rss_before / 1024:.0f} → {rss_after / 1024:.0f} MB")  # fmt: skip
        raw = subprocess.run(  # noqa: ASYNC221 — a benchmark, nothing else waits
            [sys.executable, "-c", RAW_READ, url.replace("+asyncpg", ""), first.isoformat(),
             last.isoformat()],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        if raw.returncode:
            raise RuntimeError(f"raw read failed: {raw.stderr[-2000:]}")
        raw_rows, raw_s, raw_rss = (int(raw.stdout.split()[0]), float(raw.stdout.split()[1]),
                                    int(raw.stdout.split()[2]))  # fmt: skip
        row(f"backtest, {users:,} users × 93 days ({rows:,} user-days)", "seconds", "peak MB",
            "× raw")  # fmt: skip
        row("  (a) raw read of the same rows, fresh process", f"{raw_s:.1f}",
            f"{raw_rss / 1024:.0f}", "1.00")  # fmt: skip
        row(f"  simulate weekend rule ({sim['grants']:,} grants)", f"{seconds:.1f}",
            f"{rss_after / 1024:.0f} (+{(rss_after - rss_before) / 1024:.0f})",
            f"{seconds / raw_s:.2f}")  # fmt: skip
        results["backtest"] = {
            "users": users, "user_days": rows, "raw_rows": raw_rows, "raw_read_s": raw_s,
            "raw_peak_rss_mb": raw_rss / 1024, "simulate_s": seconds,
            "rewards_peak_rss_mb_before": rss_before / 1024,
            "rewards_peak_rss_mb_after": rss_after / 1024, "grants": sim["grants"],
            "by_rule": sim["by_rule"],
        }  # fmt: skip
    finally:
        stack.stop()


REPORT_GRANTS = 1_000_000


def report_definition(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    reward = [{"kind": "credit_fen", "amount": 200}, {"kind": "data_mb", "amount": 100}]
    return {
        "name": "Report bench",
        "starts_at": starts_at.isoformat(),
        "ends_at": ends_at.isoformat(),
        "holdout_percent": 10,
        "unit_prices": {"data_mb": 3},
        "rules": [
            {"kind": "threshold", "id": "monthly", "period": "month", "rewards": reward,
             "condition": {"metric": "user.month.checkins", "op": ">=", "value": 3}},
            {"kind": "threshold", "id": "daily", "period": "day", "rewards": reward[:1],
             "condition": {"metric": "user.day.checkins", "op": ">=", "value": 1}},
        ],
    }  # fmt: skip


async def bulk_load_grants(database_url: str, cid: str, month: Any, users: int) -> None:
    """REPORT_GRANTS grants: one monthly grant per user (up to `users`), the rest daily ones over
    30 days; user-month metrics for the month and the next."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        monthly = min(users, REPORT_GRANTS // 2)
        await conn.execute(
            """
            INSERT INTO rewards.grants (campaign_id, version, rule_id, role, user_id, period,
                status, items, fulfil_by, explanation, fulfilment_status, fulfilment_reference,
                fulfilment_at, created_at)
            SELECT $1, 1, rule_id, 'user', 'u' || lpad(CAST(n AS text), 7, '0'), period,
                status, items, CAST($2 AS date) + 40, '{}',
                CASE WHEN status <> 'granted' THEN NULL WHEN n % 3 = 0 THEN 'fulfilled'
                     ELSE 'pending' END,
                CASE WHEN status = 'granted' AND n % 3 = 0 THEN 'ref' END,
                CASE WHEN status = 'granted' AND n % 3 = 0 THEN now() END,
                CAST($3 AS timestamptz) + (n % 30) * interval '1 day'
            FROM (
                SELECT n, 'monthly' AS rule_id, to_char(CAST($2 AS date), 'YYYY-MM') AS period,
                    CAST('[{"kind": "credit_fen", "amount": 200},
                           {"kind": "data_mb", "amount": 100}]' AS jsonb) AS items
                FROM generate_series(0, CAST($4 AS int) - 1) AS n
                UNION ALL
                SELECT n % $5, 'daily',
                    to_char(CAST($2 AS date) + CAST(n / $5 AS int), 'YYYY-MM-DD'),
                    CAST('[{"kind": "credit_fen", "amount": 200}]' AS jsonb)
                FROM generate_series(0, CAST($6 AS int) - 1) AS n
            ) g CROSS JOIN LATERAL (SELECT CASE WHEN n % 10 = 7 THEN 'held_out'
                WHEN n % 50 = 1 THEN 'budget_exhausted' ELSE 'granted' END AS status) s
            """,
            cid, month, datetime.combine(month, datetime.min.time(), TZ), monthly,
            max(1, (REPORT_GRANTS - monthly) // 30), REPORT_GRANTS - monthly,
        )  # fmt: skip
        for m, points in ((month, "n % 50"), (next_month_of(month), "n % 60 + (n % 10 <> 7)::int")):
            await conn.execute(
                "INSERT INTO rewards.user_month (user_id, month, metrics) "
                "SELECT 'u' || lpad(CAST(n AS text), 7, '0'), CAST($1 AS date), jsonb_build_object("
                f"'activity_points', {points}, 'active', CAST(n % 4 > 0 AS int)) "
                "FROM generate_series(0, CAST($2 AS int) - 1) AS n ON CONFLICT DO NOTHING",
                m, users,
            )  # fmt: skip
        await conn.execute("ANALYZE rewards.grants; ANALYZE rewards.user_month")
    finally:
        await conn.close()


def next_month_of(d: Any) -> Any:
    return d.replace(year=d.year + (d.month == 12), month=d.month % 12 + 1, day=1)


async def raw_count(database_url: str, cid: str) -> float:
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        t = time.perf_counter()
        await conn.fetchval("SELECT count(*) FROM rewards.grants WHERE campaign_id = $1", cid)
        return time.perf_counter() - t
    finally:
        await conn.close()


async def report(users: int, results: dict[str, Any]) -> None:
    """GET /v1/campaigns/{id}/report over 1,000,000 grants, beside a raw count of them."""
    stack = Stack(var_dir=OUT / "var-rewards-report", fixed_ports=False).start_infra()
    try:
        url, bootstrap = stack.database_url, stack.kafka_bootstrap
        assert url and bootstrap
        stack.start_service("ingest")
        rewards = stack.start_service("rewards", env={"REWARDS_SETTLE_INTERVAL_S": "0"})
        owner = (await issue_api_key(url, "owner", [Role.CAMPAIGN_OWNER], 1e9, bootstrap)).secret
        await wait_keys_known(rewards.url, "/v1/templates", [owner])
        first = (datetime.now(TZ).date() - timedelta(days=70)).replace(day=1)
        starts_at = datetime(first.year, first.month, first.day, tzinfo=TZ)
        last = next_month_of(next_month_of(first))
        ends_at = datetime(last.year, last.month, 1, tzinfo=TZ)
        own = {"Authorization": f"Bearer {owner}"}
        async with httpx.AsyncClient(base_url=rewards.url, timeout=600) as c:
            r = await c.post(
                "/v1/campaigns",
                json={"definition": report_definition(starts_at, ends_at)},
                headers=own,
            )
            r.raise_for_status()
            cid = r.json()["campaign_id"]
            t = time.perf_counter()
            await bulk_load_grants(url, cid, first, users)
            print(f"  bulk-loaded {REPORT_GRANTS:,} grants and {2 * users:,} user-months in "
                  f"{time.perf_counter() - t:.0f}s")  # fmt: skip
            reference = min([await raw_count(url, cid) for _ in range(3)])
            timings = []
            for _ in range(3):
                t = time.perf_counter()
                r = await c.get(f"/v1/campaigns/{cid}/report", headers=own)
                timings.append(time.perf_counter() - t)
                r.raise_for_status()
            t = time.perf_counter()
            csv = await c.get(f"/v1/campaigns/{cid}/report?format=csv", headers=own)
            csv_s = time.perf_counter() - t
            csv.raise_for_status()
        doc = r.json()
        grants = sum(doc["totals"]["grants"].values())
        assert grants == REPORT_GRANTS, grants
        best = min(timings)
        row(f"report, {grants:,} grants", "seconds", "× raw count")
        row("  (a) raw SELECT count(*) of the same rows", f"{reference:.3f}", "1.00")
        row("  GET /v1/campaigns/{id}/report (best of 3)", f"{best:.3f}", f"{best / reference:.1f}")
        # The first also folds the deltas the bulk load's one statement left (store/report.py).
        row("  same, the first call", f"{timings[0]:.3f}", f"{timings[0] / reference:.1f}")
        row("  same, ?format=csv", f"{csv_s:.3f}", f"{csv_s / reference:.1f}")
        results["report"] = {
            "grants": grants, "users": users, "periods": len(doc["periods"]),
            "raw_count_s": reference, "report_s": timings, "report_best_s": best,
            "csv_s": csv_s, "ratio": best / reference, "uplift": doc["uplift"],
            "funnel": doc["funnel"],
        }  # fmt: skip
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
    if "backtest" in parts:
        await backtest(users, results)
    if "report" in parts:
        await report(users, results)
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
