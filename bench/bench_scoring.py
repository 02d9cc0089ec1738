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
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

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
from shared.contract import EVENTS_TOPIC, encode_envelope
from shared.kafka import make_producer

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
    payloads = [(encode_envelope(e, received, "bench"), e["user_id"].encode()) for e in events]
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


async def raw_consume_rate(bootstrap: str, total: int) -> float:
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
        parts = [
            TopicPartition(EVENTS_TOPIC, p)
            for p in consumer.partitions_for_topic(EVENTS_TOPIC) or ()
        ]
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


async def main(parts: list[str], n: int) -> None:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    print(f"\nScoring benchmark — {results['date']} — {results['machine']}")
    if "catchup" in parts:
        await catchup(n, results)
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
