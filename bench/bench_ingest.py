"""Ingest throughput and latency, side by side with the limits measured in the same run.

    bash bench/run.sh ingest            (or: .venv/bin/python -m bench.bench_ingest)

(a) batch endpoint (100 events/request) vs. a raw aiokafka producer (acks=all) to the same broker;
(b) single-event endpoint vs. a minimal FastAPI endpoint that only returns 202 (same uvicorn);
(c) p50/p99 latency of both at a steady offered load.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.loadgen import LoadResult, build_request, run_load
from engage.stack import Stack
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.kafka import make_producer
from shared.topics import EVENTS_TOPIC

OUT = Path(__file__).parent / "out"


def synthetic_events(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """Realistic small events: mostly group messages, some logins and points."""
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    events = []
    for _ in range(n):
        kind = rnd.choices(["message", "login", "points"], [0.8, 0.15, 0.05])[0]
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "type": kind,
            "occurred_at": (now - timedelta(seconds=rnd.randint(0, 86_400))).isoformat(),
            "user_id": f"u{rnd.randint(0, 999_999):06d}",
        }
        if kind == "message":
            event |= {
                "client": rnd.choice(["pc", "mobile"]),
                "group_id": f"g{rnd.randint(0, 99_999):05d}",
            }
        elif kind == "login":
            event |= {"client": "mobile", "session_id": f"s{rnd.getrandbits(40):x}"}
        else:
            event |= {"delta": rnd.randint(1, 100)}
        events.append(event)
    return events


async def raw_producer_rate(
    bootstrap: str, events: list[dict[str, Any]], topic: str = EVENTS_TOPIC
) -> float:
    """Events/s a bare producer (acks=all, pre-built payloads) pushes to the same topic."""
    producer = make_producer(bootstrap, "bench-raw")
    await producer.start()
    payloads = [(orjson.dumps(e), e["user_id"].encode()) for e in events]
    try:
        start = time.perf_counter()
        for i in range(0, len(payloads), 5000):
            futures = [await producer.send(topic, v, key=k) for v, k in payloads[i : i + 5000]]
            await asyncio.gather(*futures)
        return len(payloads) / (time.perf_counter() - start)
    finally:
        await producer.stop()


def requests_for(
    port: int, key: str, events: list[dict[str, Any]], per_request: int
) -> list[bytes]:
    headers = {"Authorization": f"Bearer {key}"}
    out = []
    for i in range(0, len(events), per_request):
        chunk = events[i : i + per_request]
        body = orjson.dumps({"events": chunk} if per_request > 1 else chunk[0])
        out.append(build_request("127.0.0.1", port, "/v1/events", body, headers))
    return out


def row(label: str, a: str, b: str, ratio: str = "") -> None:
    print(f"  {label:<44}{a:>14}{b:>14}{ratio:>8}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def check(result: LoadResult, label: str) -> None:
    bad = {s: c for s, c in result.statuses.items() if s != 202}
    if bad:
        raise SystemExit(f"{label}: unexpected statuses {bad}")


async def main(scale: float) -> dict[str, Any]:
    stack = Stack(var_dir=OUT / "var", fixed_ports=False).start_infra()
    try:
        ingest = stack.start_service("ingest")
        minimal = stack.start_service("minimal", factory="bench.minimal_app:create_app")
        assert stack.database_url and stack.kafka_bootstrap
        key = (await issue_api_key(stack.database_url, "bench", [Role.PLATFORM], 1e9)).secret
        n_batch, n_single = int(200_000 * scale), int(20_000 * scale)

        raw = await raw_producer_rate(stack.kafka_bootstrap, synthetic_events(n_batch, seed=1))
        batch = await run_load(
            ingest.port, requests_for(ingest.port, key, synthetic_events(n_batch, 2), 100), 8
        )
        check(batch, "batch")
        batch_rate = batch.requests * 100 / batch.seconds

        single_reqs = requests_for(ingest.port, key, synthetic_events(n_single, 3), 1)
        single = await run_load(ingest.port, single_reqs, 32)
        check(single, "single")
        floor_reqs = requests_for(minimal.port, key, synthetic_events(n_single, 4), 1)
        floor = await run_load(minimal.port, floor_reqs, 32)
        check(floor, "minimal")

        # Steady offered load, open loop, latency from the scheduled send time.
        steady_batch = await run_load(
            ingest.port,
            requests_for(ingest.port, key, synthetic_events(int(40_000 * scale), 5), 100),
            16,
            rate_per_s=40,
        )
        steady_single = await run_load(
            ingest.port,
            requests_for(ingest.port, key, synthetic_events(int(10_000 * scale), 6), 1),
            32,
            rate_per_s=1000,
        )
        steady_floor = await run_load(
            minimal.port,
            requests_for(minimal.port, key, synthetic_events(int(10_000 * scale), 7), 1),
            32,
            rate_per_s=1000,
        )
        for r, label in (
            (steady_batch, "steady batch"),
            (steady_single, "steady single"),
            (steady_floor, "steady floor"),
        ):
            check(r, label)
    finally:
        stack.stop()

    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_cpus()} cores, Python {platform.python_version()}",
        "raw_producer_events_per_s": raw,
        "batch_endpoint_events_per_s": batch_rate,
        "batch_vs_raw": batch_rate / raw,
        "single_endpoint_req_per_s": single.rate,
        "minimal_endpoint_req_per_s": floor.rate,
        "single_vs_minimal": single.rate / floor.rate,
        "steady_batch": {
            "offered_req_per_s": 40,
            "events_per_s": 4000,
            "p50_s": steady_batch.percentile(0.5),
            "p99_s": steady_batch.percentile(0.99),
        },
        "steady_single": {
            "offered_req_per_s": 1000,
            "p50_s": steady_single.percentile(0.5),
            "p99_s": steady_single.percentile(0.99),
        },
        "steady_minimal": {
            "offered_req_per_s": 1000,
            "p50_s": steady_floor.percentile(0.5),
            "p99_s": steady_floor.percentile(0.99),
        },
    }
    print(f"\nIngest benchmark — {results['date']} — {results['machine']}")
    row("measure", "ingest", "reference", "ratio")
    row(
        "(a) batch of 100 vs raw producer, events/s",
        f"{batch_rate:,.0f}",
        f"{raw:,.0f}",
        f"{batch_rate / raw:.0%}",
    )
    row(
        "(b) single event vs minimal 202, req/s",
        f"{single.rate:,.0f}",
        f"{floor.rate:,.0f}",
        f"{single.rate / floor.rate:.0%}",
    )
    for label, r in (
        ("(c) batch @ 40 req/s (4,000 ev/s) p50 / p99", steady_batch),
        ("(c) single @ 1,000 req/s p50 / p99", steady_single),
        ("(c) minimal @ 1,000 req/s p50 / p99", steady_floor),
    ):
        row(label, ms(r.percentile(0.5)), ms(r.percentile(0.99)))
    OUT.mkdir(exist_ok=True)
    (OUT / f"ingest-{str(results['date'])[:10]}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2)
    )
    return results


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    asyncio.run(main(parser.parse_args().scale))
