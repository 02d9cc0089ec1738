"""The processed-event ledger over 60 simulated days (issue 19), beside a reference in the same
run: the same events through a ledger that never drops a day.

    bash bench/run.sh ledger [--days 60] [--per-day 20000]

Scoring's use cases run directly against the embedded PostgreSQL with a simulated clock (no
broker, no HTTP: the 60 days have to pass in minutes): each day, the retention pass, then the
day's events in batches of 5,000 exactly as the consumer applies them (ledger + every aggregate),
2% of them resent. Reported per schema: ledger bytes (pg_total_relation_size of its partitions)
and open days after each day, and the catch-up rate (events/s) of the first and last 10 days.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engage.stack import Stack
from services.scoring.domain.retention import Retention
from services.scoring.usecases.apply_events import apply_events
from services.scoring.usecases.ledger_retention import LedgerDays, maintain_once
from shared.contract import Envelope, decode_envelope, encode_envelope
from shared.db import make_engine, make_sessionmaker, migrate

OUT = Path(__file__).parent / "out"
MIGRATIONS = Path(__file__).parents[1] / "services" / "scoring" / "store" / "migrations"
TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)
BATCH = 5000


def day_events(day: int, per_day: int, rng: random.Random) -> list[bytes]:
    """A day of messages (and a few logins) from 50,000 users, occurring in the 24 h before
    the day's clock, as ingest would have written them."""
    now = START + timedelta(days=day)
    out = []
    for _ in range(per_day):
        at = now - timedelta(seconds=rng.randrange(86_400))
        raw: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "type": "message",
            "occurred_at": at.isoformat(),
            "user_id": f"u{rng.randrange(50_000)}",
            "client": rng.choice(("pc", "mobile")),
            "group_id": f"g{rng.randrange(2_000)}",
        }
        out.append(encode_envelope(raw, now.isoformat(), "bench", "user"))
    return out


async def run_schema(
    url: str, schema: str, retention: Retention, days: int, per_day: int
) -> dict[str, Any]:
    engine = make_engine(url, schema, pool_size=2)
    await migrate(engine, MIGRATIONS, schema, MetaData())
    sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)
    prepared = LedgerDays(sessions, retention)
    rng = random.Random(19)
    history: list[bytes] = []
    rates: list[float] = []
    sizes: list[int] = []
    open_days: list[int] = []
    try:
        for d in range(days):
            now = START + timedelta(days=d)
            await maintain_once(sessions, retention, now)
            records = day_events(d, per_day, rng)
            resent = rng.sample(history, min(len(history), per_day // 50))  # 2% retries
            history = records[-per_day // 10 :]  # tomorrow resends some of today's
            envs: list[Envelope] = [decode_envelope(r) for r in records + resent]
            rng.shuffle(envs)
            started = time.perf_counter()
            for i in range(0, len(envs), BATCH):
                chunk = envs[i : i + BATCH]
                await prepared.prepare_events(chunk, now)
                async with sessions() as session, session.begin():
                    await apply_events(session, chunk, TZ, now)
            rates.append(len(envs) / (time.perf_counter() - started))
            async with sessions() as session:
                sizes.append(
                    int(
                        await session.scalar(
                            text(
                                "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) "
                                "FROM pg_inherits WHERE inhparent = 'processed_events'::regclass"
                            )
                        )
                        or 0
                    )
                )
                open_days.append(
                    int(
                        await session.scalar(
                            text("SELECT count(*) FROM ledger_days WHERE sealed_at IS NULL")
                        )
                        or 0
                    )
                )
            if d % 10 == 9:
                print(
                    f"    {schema} day {d + 1:>3}: {rates[-1]:>9,.0f} events/s, ledger "
                    f"{sizes[-1] / 1e6:>7.1f} MB in {open_days[-1]} days"
                )
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()
    first, last = rates[:10], rates[-10:]
    return {
        "ledger_bytes_final": sizes[-1],
        "ledger_bytes_max": max(sizes),
        "open_days_final": open_days[-1],
        "events_per_s_first10": sum(first) / len(first),
        "events_per_s_last10": sum(last) / len(last),
        "sizes": sizes,
    }


async def main(days: int, per_day: int) -> None:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "days": days,
        "per_day": per_day,
    }
    stack = Stack(var_dir=OUT / "var-ledger", kafka_bootstrap="unused:9", fixed_ports=False)
    stack.start_infra()
    durability = "durable" if stack.durable else "ENGAGE_UNSAFE_FAST (fsync off)"
    print(f"\nLedger benchmark — {results['date']} — {results['machine']} — {durability}")
    print(f"  {days} simulated days × {per_day:,} events (+2% resent)")
    try:
        assert stack.database_url
        bounded = await run_schema(stack.database_url, "ledger_bounded", Retention(), days, per_day)
        never = Retention(live_horizon=timedelta(days=3650))
        reference = await run_schema(stack.database_url, "ledger_never", never, days, per_day)
    finally:
        stack.stop()
    results["bounded"], results["never_dropped"] = bounded, reference
    print(f"\n  {'':<40}{'bounded':>14}{'never dropped':>16}{'ratio':>8}")
    for label, key, scale, unit in (
        ("ledger storage after the last day", "ledger_bytes_final", 1e6, "MB"),
        ("open ledger days after the last day", "open_days_final", 1, ""),
        ("catch-up, first 10 days", "events_per_s_first10", 1, "ev/s"),
        ("catch-up, last 10 days", "events_per_s_last10", 1, "ev/s"),
    ):
        a, b = bounded[key] / scale, reference[key] / scale
        print(f"  {label:<40}{a:>11,.1f} {unit:<3}{b:>12,.1f} {unit:<3}{a / b:>7.2f}")
    trend = bounded["events_per_s_last10"] / bounded["events_per_s_first10"]
    print(f"  bounded catch-up, last 10 days / first 10 days: {trend:.2f}")
    OUT.mkdir(exist_ok=True)
    (OUT / f"ledger-{results['date'][:10]}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.days, args.per_day))
