"""Scoring benchmarks, each beside a reference measured in the same run.

    bash bench/run.sh scoring [--events 1000000] [--parts catchup,freshness,reads]

catchup    pre-load the events topic with simulator events (2% resent, shuffled), then time
           scoring from start to an empty backlog (every distinct event in its ledger), beside
           (a) raw aiokafka consume + JSON decode of the same topic — the limit — and
           (b) a Quix Streams app counting messages per user and day on the same topic — the peer.
freshness  events at a steady 2,000/s through ingest; for probe events, the time from POST to
           visible in the read API.
reads      ≥ 100,000 groups and ≥ 1,000,000 users stored (bulk-loaded); p50/p99 of leaderboard
           pages and group-month reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.bench_ingest import synthetic_events as synthetic_live_events
from bench.loadgen import build_request, run_load
from engage.progress import wait_processed
from engage.simulator.world import (
    SimConfig,
    World,
    deliveries,
    generate,
    month_start,
    previous_month,
)
from engage.stack import Stack
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.contract import PROVINCES, encode_envelope
from shared.kafka import make_producer
from shared.topics import EVENTS_TOPIC

OUT = Path(__file__).parent / "out"
PEER_VENV = Path(__file__).parent / ".peer-venv"
TZ = ZoneInfo("Asia/Shanghai")


def row(label: str, a: str, b: str = "", c: str = "") -> None:
    print(f"  {label:<52}{a:>14}{b:>14}{c:>10}")


def simulator_events(n: int, seed: int = 5) -> list[dict[str, Any]]:
    """At least `n` deliveries of a realistic world: last month and this month to date."""
    users = max(2000, n // 80)
    world = World.build(SimConfig(seed=seed, users=users, groups=max(100, users // 20)))
    now = datetime.now(UTC)
    start = previous_month(month_start(now.astimezone(TZ).date()))
    events = []
    for event in generate(world, start, now):
        events.append(event)
        if len(events) >= n:
            break
    return deliveries(events, SimConfig(seed=seed, duplicate_rate=0.02, shuffle_window=5000))


async def preload(bootstrap: str, events: list[dict[str, Any]], partitions: int) -> float:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Quix reads retention.ms from the topic, so it is set explicitly (FIELD-NOTES).
        await admin.create_topics(
            [NewTopic(EVENTS_TOPIC, partitions, 1, topic_configs={"retention.ms": "604800000"})]
        )
    finally:
        await admin.close()
    received = datetime.now(UTC).isoformat()
    payloads = [
        (encode_envelope(e, received, "bench", "platform"), e["user_id"].encode()) for e in events
    ]
    producer = make_producer(bootstrap, "bench-preload")
    await producer.start()
    start = time.perf_counter()
    try:
        for i in range(0, len(payloads), 10_000):
            futures = [
                await producer.send(EVENTS_TOPIC, v, key=k) for v, k in payloads[i : i + 10_000]
            ]
            for f in futures:
                await f
    finally:
        await producer.stop()
    return len(payloads) / (time.perf_counter() - start)


async def raw_consume_rate(bootstrap: str, total: int, topic: str = EVENTS_TOPIC) -> float:
    """Records/s of a bare aiokafka consumer decoding each record's JSON: the limit."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = 0
        start = time.perf_counter()
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                for r in records:
                    orjson.loads(r.value)
                seen += len(records)
        return seen / (time.perf_counter() - start)
    finally:
        await asyncio.sleep(0)
        await consumer.stop()


def quix_peer(bootstrap: str, total: int) -> dict[str, Any] | None:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "quixstreams==3.28.1", "orjson"], check=True
        )
    out = subprocess.run(
        [
            str(python),
            str(Path(__file__).parent / "peer_quix.py"),
            bootstrap,
            EVENTS_TOPIC,
            str(total),
            TZ.key,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    print(out.stderr[-2000:], file=sys.stderr)
    return None


async def catchup(n: int, results: dict[str, Any]) -> None:
    stack = Stack(var_dir=OUT / "var-catchup", fixed_ports=False).start_infra()
    try:
        assert stack.kafka_bootstrap and stack.database_url
        t = time.perf_counter()
        events = simulator_events(n)
        distinct = len({e["event_id"] for e in events})
        took = time.perf_counter() - t
        print(f"  generated {len(events):,} deliveries ({distinct:,} distinct) in {took:.0f}s")
        produce_rate = await preload(stack.kafka_bootstrap, events, 6)
        sent = len(events)
        del events
        raw = await raw_consume_rate(stack.kafka_bootstrap, sent)
        peer = quix_peer(stack.kafka_bootstrap, sent)
        peer_rate = peer["records"] / peer["seconds"] if peer else float("nan")
        results["catchup"] = {
            "deliveries": sent,
            "distinct": distinct,
            "raw_consume_decode_per_s": raw,
            "quix_peer_per_s": peer_rate,
            "preload_produce_per_s": produce_rate,
        }
        row(f"catch-up of {sent:,} pre-loaded records", "records/s", "vs limit", "vs peer")
        for replicas in (1, 2):
            schema = f"scoring_{replicas}"
            env = {"SCORING_SCHEMA_NAME": schema, "SCORING_CONSUMER_GROUP": schema}
            procs = [
                stack.start_service("scoring", env=env, instance=f"-{schema}-{i}")
                for i in range(replicas)
            ]
            start = time.perf_counter()
            await wait_processed(stack.database_url, 1, schema, timeout_s=120)
            first = time.perf_counter()
            await wait_processed(stack.database_url, distinct, schema, timeout_s=1800)
            done = time.perf_counter()
            total_rate, steady_rate = sent / (done - start), sent / (done - first)
            rss = sum(_rss_mb(p.proc.pid) for p in procs)
            results["catchup"][f"replicas_{replicas}"] = {
                "seconds_from_start": done - start,
                "seconds_from_first_batch": done - first,
                "records_per_s": total_rate,
                "records_per_s_after_first_batch": steady_rate,
                "rss_mb": rss,
            }
            label = f"  scoring, {replicas} replica{'s' if replicas > 1 else ''}, from start"
            row(
                label,
                f"{total_rate:,.0f}",
                f"{total_rate / raw:.0%}",
                f"{total_rate / peer_rate:.2f}x",
            )
            row(
                f"  scoring, {replicas} replica{'s' if replicas > 1 else ''}, after the group join",
                f"{steady_rate:,.0f}",
                f"{steady_rate / raw:.0%}",
                f"{steady_rate / peer_rate:.2f}x",
            )
            row(
                f"    resident memory ({replicas} process{'es' if replicas > 1 else ''})",
                f"{rss:,.0f} MB",
            )
            for p in procs:
                p.stop()
        row("  (a) raw aiokafka consume + JSON decode (limit)", f"{raw:,.0f}")
        row("  (b) Quix Streams, messages per user and day (peer)", f"{peer_rate:,.0f}")
    finally:
        stack.stop()


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def freshness(results: dict[str, Any], seconds: float = 30.0, rate: int = 2000) -> None:
    """Probe events posted among a steady load; time from POST to visible in the read API.

    Latency is measured from just before the probe's POST (≈ its received_at) to the first read
    that shows it, so it includes ingest, the broker, the consumer's batch and the poll interval.
    """
    stack = Stack(var_dir=OUT / "var-freshness", fixed_ports=False).start_infra()
    try:
        assert stack.database_url and stack.kafka_bootstrap
        ingest = stack.start_service("ingest")
        scoring = stack.start_service("scoring")
        issue = partial(
            issue_api_key, stack.database_url, rate_per_s=1e9, kafka_bootstrap=stack.kafka_bootstrap
        )
        writer = (await issue("load", [Role.PLATFORM])).secret
        viewer = (await issue("probe", [Role.VIEWER])).secret
        await wait_processed(stack.database_url, 0)
        batches = int(seconds * rate / 100)
        load = [
            build_request(
                "127.0.0.1",
                ingest.port,
                "/v1/events",
                orjson.dumps({"events": synthetic_live_events(100, seed=i)}),
                {"Authorization": f"Bearer {writer}"},
            )
            for i in range(batches)
        ]
        latencies: list[float] = []

        async def probe(i: int, client: httpx.AsyncClient) -> None:
            user = f"probe-{i}-{uuid.uuid4().hex[:6]}"
            event = {
                "event_id": str(uuid.uuid4()),
                "type": "message",
                "client": "mobile",
                "occurred_at": datetime.now(UTC).isoformat(),
                "user_id": user,
            }
            day = datetime.now(UTC).astimezone(TZ).date().isoformat()
            sent = time.perf_counter()
            r = await client.post(
                f"{ingest.url}/v1/events", json=event, headers={"Authorization": f"Bearer {writer}"}
            )
            assert r.status_code == 202, r.text
            while True:
                got = await client.get(
                    f"{scoring.url}/v1/users/{user}/days/{day}",
                    headers={"Authorization": f"Bearer {viewer}"},
                )
                if got.json().get("messages") == 1:
                    latencies.append(time.perf_counter() - sent)
                    return
                if time.perf_counter() - sent > 30:
                    raise TimeoutError(f"probe {user} not visible after 30 s")
                # Polling has a cost on the service; 50 ms keeps it near 100 requests/s.
                await asyncio.sleep(0.05)

        async def probes(client: httpx.AsyncClient) -> None:
            tasks = []
            for i in range(int(seconds * 4)):
                tasks.append(asyncio.create_task(probe(i, client)))
                await asyncio.sleep(0.25)
            await asyncio.gather(*tasks)

        import asyncpg

        db = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""))
        async with httpx.AsyncClient(timeout=30) as client:
            background = asyncio.create_task(run_load(ingest.port, load, 16, rate_per_s=rate / 100))
            # Steady state: the consumer has joined its group and is applying the load.
            await wait_processed(stack.database_url, 1, timeout_s=60)
            await probes(client)
            load_result = await background
        await db.close()
        latencies.sort()
        p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
        achieved = load_result.requests * 100 / load_result.seconds
        results["freshness"] = {
            "offered_events_per_s": rate,
            "achieved_events_per_s": achieved,
            "probes": len(latencies),
            "p50_s": p50,
            "p99_s": p99,
            "max_s": latencies[-1],
        }
        row(f"freshness at {achieved:,.0f} events/s, {len(latencies)} probes", "p50", "p99", "max")
        row(
            "  POST → visible in GET /v1/users/{id}/days/{day}",
            f"{p50 * 1000:,.0f} ms",
            f"{p99 * 1000:,.0f} ms",
            f"{latencies[-1] * 1000:,.0f} ms",
        )
    finally:
        stack.stop()


async def reads(results: dict[str, Any], groups: int = 100_000, users: int = 1_000_000) -> None:
    """Leaderboard pages and group months with 100k groups and 1M users stored."""
    stack = Stack(var_dir=OUT / "var-reads", fixed_ports=False).start_infra()
    try:
        assert stack.database_url and stack.kafka_bootstrap
        scoring = stack.start_service("scoring", env={"SCORING_CONSUME": "false"})
        viewer = (
            await issue_api_key(
                stack.database_url, "reader", [Role.VIEWER], 1e9, stack.kafka_bootstrap
            )
        ).secret
        month = month_start(datetime.now(UTC).astimezone(TZ).date())
        t = time.perf_counter()
        await _bulk_load(stack.database_url, month, groups, users)
        print(
            f"  bulk-loaded {groups:,} groups and {users:,} users in {time.perf_counter() - t:.0f}s"
        )
        await asyncio.sleep(1.5)  # the key directory picks the new key up
        headers = {"Authorization": f"Bearer {viewer}"}
        rnd = random.Random(3)
        label = month.strftime("%Y-%m")

        def gets(paths: list[str]) -> list[bytes]:
            return [build_request("127.0.0.1", scoring.port, p, b"", headers, "GET") for p in paths]

        n = 3000
        boards = gets(
            [f"/v1/leaderboards/{label}/{rnd.choice(PROVINCES)}?limit=20" for _ in range(n)]
        )
        deep = gets(
            [
                f"/v1/leaderboards/{label}/{rnd.choice(PROVINCES)}?limit=100&min_members=5"
                for _ in range(n)
            ]
        )
        group_reads = gets(
            [f"/v1/groups/G{rnd.randrange(groups)}/months/{label}" for _ in range(n)]
        )
        floor = gets(["/healthz"] * n)
        await run_load(scoring.port, boards[:200], 4)  # warm the caches
        measured: dict[str, Any] = {}
        row(f"reads, {groups:,} groups / {users:,} users", "p50", "p99", "req/s (4)")
        for name, reqs in (
            ("leaderboard page (20)", boards),
            ("leaderboard 100, min_members", deep),
            ("group month + rank + top members", group_reads),
            ("/healthz (floor)", floor),
        ):
            r = await run_load(scoring.port, reqs, 4)
            bad = {k: v for k, v in r.statuses.items() if k != 200}
            if bad:
                raise SystemExit(f"{name}: unexpected statuses {bad}")
            measured[name] = {
                "p50_s": r.percentile(0.5),
                "p99_s": r.percentile(0.99),
                "req_per_s": r.rate,
            }
            row(
                f"  {name}",
                f"{r.percentile(0.5) * 1000:.1f} ms",
                f"{r.percentile(0.99) * 1000:.1f} ms",
                f"{r.rate:,.0f}",
            )
        results["reads"] = {"groups": groups, "users": users, **measured}
    finally:
        stack.stop()


async def _bulk_load(database_url: str, month: Any, groups: int, users: int) -> None:
    """Synthetic rows straight into scoring's tables (loading 1M users through events would
    take longer than the benchmark itself). Every user is a member of one group."""
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    provinces = list(PROVINCES)
    try:
        await conn.execute("SET search_path = scoring")
        await conn.execute(
            "INSERT INTO groups (group_id, owner_id, name, province, created_at, created_event_id)"
            " SELECT 'G' || i, 'U' || (i * 10), 'group ' || i, ($3::text[])[1 + i % 34],"
            " $1::timestamptz - interval '40 days', 'e' || i FROM generate_series(0, $2 - 1) i",
            datetime.now(UTC),
            groups,
            provinces,
        )
        await conn.execute(
            "INSERT INTO user_month (user_id, month, messages, messages_sms, online_seconds_pc,"
            " online_seconds_mobile, online_points, message_points, activity_points, points_delta,"
            " friends_added, checkins, logins, active_days)"
            " SELECT 'U' || i, $1::date, (i * 7) % 300, 0, (i * 13) % 50000, (i * 17) % 20000,"
            " (i * 3) % 100, (i * 7) % 300, (i * 11) % 400, (i * 19) % 1000 - 300, i % 5, i % 20,"
            " i % 40, i % 30 FROM generate_series(0, $2 - 1) i",
            month,
            users,
        )
        await conn.execute(
            "INSERT INTO membership_spans (group_id, user_id, joined_at, left_at)"
            " SELECT 'G' || (i % $2), 'U' || i, $3::timestamptz - interval '40 days', NULL"
            " FROM generate_series(0, $1 - 1) i",
            users,
            groups,
            datetime.now(UTC),
        )
        await conn.execute(
            "INSERT INTO group_month (group_id, month, members, active_members, activity_points,"
            " points_growth, bonus_points, group_messages)"
            " SELECT s.group_id, $1::date, count(*), count(*) FILTER (WHERE um.messages >= 1),"
            " sum(um.activity_points), sum(um.points_delta), (hashtext(s.group_id) & 1023), 0"
            " FROM membership_spans s JOIN user_month um ON um.user_id = s.user_id"
            " AND um.month = $1::date GROUP BY s.group_id",
            month,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def main(parts: list[str], n: int) -> None:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    print(f"\nScoring benchmark — {results['date']} — {results['machine']}")
    if "catchup" in parts:
        await catchup(n, results)
    if "freshness" in parts:
        await freshness(results)
    if "reads" in parts:
        await reads(results)
    OUT.mkdir(exist_ok=True)
    (OUT / f"scoring-{results['date'][:10]}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--parts", default="catchup,freshness,reads")
    args = parser.parse_args()
    asyncio.run(main(args.parts.split(","), args.events))
