"""Notify's sustained send rate through SMPP, beside the SMSC simulator's own acceptance rate.

    bash bench/run.sh notify [--messages 5000]

reference  a bare smpp34 client submitting the same number of messages to the loopback SMSC
           simulator (engage/smsc.py), 32 in flight: what the simulator accepts per second.
notify     the same number of send requests on engage.notify.v1 (category service, channel
           sms, cap and window out of the way). Sustained rate: messages delivered (receipt
           applied) per second between 10% and 90% of them; also the whole run from the first
           request published to the last receipt, start-up (consumer group join) included.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import smpp34

from engage.progress import wait_keys_known
from engage.smsc import SmscSimulator
from engage.stack import Stack
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.kafka import make_producer

OUT = Path(__file__).parent / "out"


def row(label: str, *cells: str) -> None:
    print(f"  {label:<46}" + "".join(f"{c:>14}" for c in cells))


async def simulator_rate(n: int, in_flight: int = 32) -> float:
    sim = await SmscSimulator(receipt_delay_s=0.0).start()
    try:
        session = await smpp34.Client(
            "127.0.0.1", sim.port, "bench", "pw", bind_type="TRX"
        ).connect()
        gate = asyncio.Semaphore(in_flight)
        body = "【飞信】您的积分已到账。".encode("utf-16-be")

        async def one(i: int) -> None:
            async with gate:
                r = await session.submit_sm(f"u{i}", body, data_coding=8, registered_delivery=0)
                assert r.is_success

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        rate = n / (time.perf_counter() - start)
        await session.unbind()
        return rate
    finally:
        await sim.stop()


async def notify_rate(n: int, results: dict[str, Any]) -> tuple[float, float]:
    sim = await SmscSimulator(receipt_delay_s=0.0).start()
    stack = Stack(var_dir=OUT / "var-notify", fixed_ports=False).start_infra()
    try:
        url, bootstrap = stack.database_url, stack.kafka_bootstrap
        assert url and bootstrap
        stack.start_service("ingest")
        notify = stack.start_service(
            "notify", env={"NOTIFY_SMPP_HOST": "127.0.0.1", "NOTIFY_SMPP_PORT": str(sim.port)}
        )
        admin = (await issue_api_key(url, "admin", [Role.ADMIN], 1e9, bootstrap)).secret
        await wait_keys_known(notify.url, "/v1/policies", [admin])
        async with httpx.AsyncClient(
            base_url=notify.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
        ) as c:
            body = {"daily_cap": 1000, "window_start": "00:00", "window_end": "00:00",
                    "ttl_seconds": 86400, "marketing": False}  # fmt: skip
            (await c.put("/v1/policies/service", json=body)).raise_for_status()
            template = {"category": "service", "text": "【飞信】{name}，您的积分已到账。",
                        "placeholders": ["name"]}  # fmt: skip
            (await c.put("/v1/templates/points/sms/zh-CN", json=template)).raise_for_status()
            producer = make_producer(bootstrap, "bench")
            await producer.start()
            start = time.perf_counter()
            try:
                for i in range(n):
                    req = {
                        "request_id": f"b{i}", "user_id": f"u{i}", "template": "points",
                        "category": "service", "channel": "sms", "params": {"name": f"用户{i}"},
                    }  # fmt: skip
                    await producer.send("engage.notify.v1", orjson.dumps(req), key=f"u{i}".encode())
                await producer.flush()
            finally:
                await producer.stop()
            t10 = t90 = delivered_at = None
            while delivered_at is None:
                counts = (await c.get("/v1/notifications/counts")).json()["counts"]
                done, now = counts.get("delivered", 0), time.perf_counter()
                if t10 is None and done >= n // 10:
                    t10 = now
                if t90 is None and done >= n * 9 // 10:
                    t90 = now
                if done >= n:
                    delivered_at = now - start
                await asyncio.sleep(0.05)
        assert len(sim.submitted) == n, f"simulator saw {len(sim.submitted)} of {n}"
        assert t10 is not None and t90 is not None
        sustained = (n * 9 // 10 - n // 10) / (t90 - t10)
        results["notify"] = {"sustained_per_s": sustained, "whole_run_s": delivered_at}
        return sustained, n / delivered_at
    finally:
        stack.stop()
        await sim.stop()


async def main(n: int) -> None:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "messages": n,
    }
    print(f"\nNotify benchmark — {results['date']} — {results['machine']}")
    reference = await simulator_rate(n)
    sustained, whole = await notify_rate(n, results)
    results |= {"simulator_per_s": reference}
    row(f"SMPP, {n:,} messages (UCS-2)", "msg/s", "ratio")
    row("  reference: bare client → simulator (32 in flight)", f"{reference:,.0f}", "1.00")
    row("  notify, sustained (10%→90% delivered)", f"{sustained:,.0f}",
        f"{sustained / reference:.2f}")  # fmt: skip
    row("  notify, whole run incl. start-up", f"{whole:,.0f}", f"{whole / reference:.2f}")
    OUT.mkdir(exist_ok=True)
    (OUT / f"notify-{results['date'][:10]}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    asyncio.run(main(parser.parse_args().messages))
