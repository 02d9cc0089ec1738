"""Bounded simulations (SPEC §15, issue 18 item 3): the worst simulation the limits allow,
beside the idle service measured in the same run.

    bash bench/run.sh bounded [--users 300000] [--days 92]

`--users` users' user-days over `--days` days are bulk-loaded into rewards (each user active
on about one day in eight, as in bench_rewards `backtest`) and analysed. Rewards starts with
the size budget REWARDS_SIMULATION_MAX_USER_DAYS set to exactly (days × 1 rule × the users
the service will estimate), and the gate's limits (ENGAGE_HEAVY_MAX_PER_SERVICE, default 1, or
as given with `--env`; 1 per key). The worst the limits allow is then that many simulations of
a weekly threshold (the "weekend chat boost" template) over the whole range at the budget, from
as many keys at once; one key more and a range one day longer are checked to be refused (429,
422). `--env NAME=VALUE` passes a setting to rewards (e.g. ENGAGE_HEAVY_MAX_PER_SERVICE=2).

Measured: `/healthz` polled every 10 ms (one request at a time) for 10 s on the idle service —
the reference — and throughout the simulations: p50/p99/max and their ratios to the
reference's p99; the rewards process's resident size (peak, and sampled every 100 ms); and the
main thread's scheduler statistics (time on a CPU, time runnable but waiting for one).
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

from bench.bench_rewards import bulk_load_days, peak_rss_kb, weekend_rule_definition
from engage.progress import wait_keys_known
from engage.stack import Stack, stopped_by_signals
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.heavy import HeavySettings

TZ = ZoneInfo("Asia/Shanghai")
OUT = Path(__file__).parent / "out"
ESTIMATE = (
    "SELECT c.reltuples, s.n_distinct FROM pg_class c JOIN pg_namespace n "
    "ON n.oid = c.relnamespace AND n.nspname = 'rewards' LEFT JOIN pg_stats s "
    "ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'user_id' "
    "WHERE c.relname = 'user_day'"
)


def row(label: str, *cells: str) -> None:
    print(f"  {label:<46}" + "".join(f"{c:>12}" for c in cells))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def schedstat(pid: int) -> tuple[int, int, int]:
    """The main thread's (ns on a CPU, ns waiting for a CPU, time slices) since it started."""
    ran, waited, slices = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(ran), int(waited), int(slices)


async def poll_healthz(c: httpx.AsyncClient, stop: asyncio.Event, out: list[float]) -> None:
    """One request at a time, 10 ms apart: each latency in ms."""
    while not stop.is_set():
        t = time.perf_counter()
        r = await c.get("/healthz")
        out.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        await asyncio.sleep(0.01)


async def sample_rss(pid: int, stop: asyncio.Event, out: list[int]) -> None:
    while not stop.is_set():
        out.append(rss_kb(pid))
        await asyncio.sleep(0.1)


async def estimated_users(database_url: str) -> int:
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        r = await conn.fetchrow(ESTIMATE)
        assert r is not None and r["n_distinct"] is not None, "user_day was not analysed"
        n = float(r["n_distinct"])
        return int(n if n > 0 else -n * float(r["reltuples"]))
    finally:
        await conn.close()


async def run(
    users: int,
    days: int,
    results: dict[str, Any],
    debug_loop: bool,
    in_thread: bool,
    extra_env: dict[str, str],
) -> None:
    stack = Stack(var_dir=OUT / "var-bounded", fixed_ports=False).start_infra()
    try:
        url, bootstrap = stack.database_url, stack.kafka_bootstrap
        assert url and bootstrap
        # Schema first (a rewards start migrates it), then the rows, then the budget.
        probe = stack.start_service("rewards", instance="-migrate", env={"REWARDS_CONSUME": "0"})
        probe.stop()
        today = datetime.now(TZ).date()
        last = today - timedelta(days=1)
        first = last - timedelta(days=days - 1)
        t = time.perf_counter()
        rows = await bulk_load_days(url, first, days, users)
        print(f"  bulk-loaded {rows:,} user-days of {users:,} users in "
              f"{time.perf_counter() - t:.0f}s")  # fmt: skip
        estimate = await estimated_users(url)
        budget = days * 1 * estimate
        rewards = stack.start_service(
            "rewards",
            env={
                "REWARDS_CONSUME": "false",
                "REWARDS_SETTLE_INTERVAL_S": "0",
                "REWARDS_SIMULATION_MAX_USER_DAYS": str(budget),
                "REWARDS_SIMULATION_IN_THREAD": str(in_thread).lower(),
                # --debug-loop: asyncio logs each step that held the loop > 100 ms (a profile)
                **({"PYTHONASYNCIODEBUG": "1"} if debug_loop else {}),
                **extra_env,
            },
        )

        async def key(name: str, role: Role) -> str:
            return (await issue_api_key(url, name, [role], 1e9, bootstrap)).secret

        owner = await key("owner", Role.CAMPAIGN_OWNER)
        parallel = int(
            extra_env.get("ENGAGE_HEAVY_MAX_PER_SERVICE", HeavySettings().max_per_service)
        )
        viewers = [await key(f"viewer-{i}", Role.VIEWER) for i in range(parallel + 1)]
        await wait_keys_known(rewards.url, "/v1/templates", [owner, *viewers])
        starts_at = datetime(first.year, first.month, first.day, tzinfo=TZ)
        ends_at = datetime(today.year, today.month, today.day, tzinfo=TZ)
        doc = weekend_rule_definition(starts_at, ends_at)

        def auth(k: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {k}"}

        async with httpx.AsyncClient(base_url=rewards.url, timeout=600) as c:
            r = await c.post("/v1/campaigns", json={"definition": doc}, headers=auth(owner))
            r.raise_for_status()
            path = f"/v1/campaigns/{r.json()['campaign_id']}/versions/1:simulate"
            whole = {"from": first.isoformat(), "to": last.isoformat(), "sample": 5}
            longer = {**whole, "from": (first - timedelta(days=1)).isoformat()}
            over = await c.post(path, json=longer, headers=auth(viewers[0]))
            assert over.status_code == 422, over.text
            assert over.json()["code"] == "simulation_too_large", over.text

            stop = asyncio.Event()
            idle: list[float] = []
            poller = asyncio.ensure_future(poll_healthz(c, stop, idle))
            await asyncio.sleep(10)
            stop.set()
            await poller

            rss_before = peak_rss_kb(rewards.proc.pid)
            sched_before = schedstat(rewards.proc.pid)
            stop = asyncio.Event()
            busy: list[float] = []
            rss: list[int] = []
            watchers = [
                asyncio.ensure_future(poll_healthz(c, stop, busy)),
                asyncio.ensure_future(sample_rss(rewards.proc.pid, stop, rss)),
            ]
            t = time.perf_counter()
            sims = [
                asyncio.ensure_future(c.post(path, json=whole, headers=auth(v)))
                for v in viewers[:parallel]
            ]
            await asyncio.sleep(1)
            third = await c.post(path, json=whole, headers=auth(viewers[parallel]))
            answers = await asyncio.gather(*sims)
            seconds = time.perf_counter() - t
            stop.set()
            await asyncio.gather(*watchers)
            rss_peak = peak_rss_kb(rewards.proc.pid)
            sched = [b - a for a, b in zip(sched_before, schedstat(rewards.proc.pid), strict=True)]
        for a in answers:
            assert a.status_code == 200, a.text
        assert third.status_code == 429, third.text
        grants = [a.json()["grants"] for a in answers]
        ref_p99 = quantile(idle, 0.99)
        p50, p99, worst = quantile(busy, 0.5), quantile(busy, 0.99), max(busy)
        print(f"  budget {budget:,} user-days = {days} days × 1 rule × ~{estimate:,} users "
              f"(estimated; {users:,} loaded); one day more: 422; one key more: 429")  # fmt: skip
        row("healthz (ms)", "p50", "p99", "max", "n", "p99 × ref")
        row("  reference: idle service, same run", f"{quantile(idle, 0.5):.1f}",
            f"{ref_p99:.1f}", f"{max(idle):.1f}", f"{len(idle)}", "1.00")  # fmt: skip
        row(f"  during {parallel} simulation(s) at the budget ({seconds:.0f} s)", f"{p50:.1f}",
            f"{p99:.1f}", f"{worst:.1f}", f"{len(busy)}", f"{p99 / ref_p99:.2f}")  # fmt: skip
        # Where a request's time goes: waiting for a CPU (the OS: other processes, the
        # simulations' threads and database backends) — the rest is waiting for the GIL.
        print(f"  rewards main thread during the simulations: {sched[0] / 1e9:.1f} s on a CPU, "
              f"{sched[1] / 1e9:.1f} s runnable but waiting for one, {sched[2]:,} time slices "
              f"({sched[1] / max(1, sched[2]) / 1e6:.2f} ms wait per slice)")  # fmt: skip
        row("rewards RSS (MB)", "before", "peak", "max sampled")
        row("  ", f"{rss_before / 1024:.0f}", f"{rss_peak / 1024:.0f}",
            f"{max(rss) / 1024:.0f}")  # fmt: skip
        results["bounded"] = {
            "in_thread": in_thread, "users": users, "days": days, "user_days_loaded": rows,
            "estimated_users": estimate,
            "budget_user_days": budget, "simulations": parallel, "seconds": seconds,
            "grants": grants,
            "healthz_idle_ms": {"p50": quantile(idle, 0.5), "p99": ref_p99, "max": max(idle),
                                "n": len(idle)},
            "healthz_busy_ms": {"p50": p50, "p99": p99, "max": worst, "n": len(busy)},
            "main_thread_sched": {"cpu_s": sched[0] / 1e9, "wait_s": sched[1] / 1e9,
                                  "slices": sched[2]},
            "rss_mb": {"before_peak": rss_before / 1024, "peak": rss_peak / 1024,
                       "max_sampled": max(rss) / 1024},
        }  # fmt: skip
    finally:
        stack.stop()


async def main(
    users: int, days: int, debug_loop: bool, in_thread: bool, extra_env: dict[str, str]
) -> None:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}",
    }
    where = "in a worker thread" if in_thread else "on the event loop"
    print(f"\nBounded simulation benchmark — {results['date']} — {results['machine']}"
          f" — simulations {where}")  # fmt: skip
    results["env"] = extra_env
    await run(users, days, results, debug_loop, in_thread, extra_env)
    OUT.mkdir(exist_ok=True)
    (OUT / f"bounded-{results['date'][:10]}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=92, help="at most 92: the check one day longer")
    parser.add_argument("--debug-loop", action="store_true")
    parser.add_argument(
        "--on-the-loop",
        action="store_true",
        help="REWARDS_SIMULATION_IN_THREAD=false: simulations on the service's event loop",
    )
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for rewards (e.g. a setting)"
    )
    args = parser.parse_args()
    extra = dict(e.split("=", 1) for e in args.env)
    with stopped_by_signals():
        asyncio.run(main(args.users, args.days, args.debug_loop, not args.on_the_loop, extra))
