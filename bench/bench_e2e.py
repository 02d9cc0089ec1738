"""End to end: the demo month at full speed through all four services, beside each service's
own limit and the raw broker, all measured in the same run on the same events.

    bash bench/run.sh e2e [--users 2000] [--groups 120]

references  a bare aiokafka producer (acks=all, pre-built payloads) and a bare consumer (JSON
            decode) on a scratch topic of the same broker: the broker's limits on this machine.
pipeline    the four services running together, as in `engage demo`: last month in full through
            POST /v1/events:import and this month to date through POST /v1/events, both as fast
            as ingest answers (4 connections), with the two live campaigns (play and get gifts,
            invite friends) active and the reward policy open around the clock. Measured: events/s
            accepted by ingest, time until every service drained, and for every grant the
            latency from the `received_at` of the event that qualified the user (the first
            mobile message; the second friend added, in arrival order) to the grant row, and to
            its notice being handed to the provider (sandbox); each service's peak resident
            memory (VmHWM) and final RSS.
limits      the same events through one service at a time on a fresh broker and database: ingest
            alone (nothing consuming), then scoring alone over the full backlog, then rewards
            alone over scoring's whole output, then notify alone over every grant: each
            service's throughput with the machine to itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import orjson

from bench.bench_ingest import raw_producer_rate
from bench.bench_scoring import raw_consume_rate
from engage.demo import split_months
from engage.demo_campaigns import CampaignKeys, campaign_window, launch_campaigns
from engage.demo_notify import open_window
from engage.progress import (
    count_rows,
    processed_events,
    stored_offsets,
    topic_ends,
    wait_consumed,
    wait_keys_known,
    wait_notices_ended,
    wait_outbox_empty,
    wait_processed,
)
from engage.simulator.client import PostReport, post_events
from engage.simulator.world import SimConfig, deliveries
from engage.stack import Stack
from engage.topic_audit import read_topic
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.contract import decode_envelope
from shared.kafka import ensure_topics
from shared.topics import EVENTS_TOPIC

OUT = Path(__file__).parent / "out"
CAMPAIGNS = ("play_and_get_gifts", "invite_friends")
METRICS, GRANTS = "engage.metrics.v1", "engage.grants.v1"
SERVICES = ("ingest", "scoring", "rewards", "notify")
RAW_TOPIC = "bench.raw.v1"


def row(label: str, *cells: str) -> None:
    print(f"  {label:<50}" + "".join(f"{c:>16}  " for c in cells))


def _status_kb(pid: int, field_name: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (q = 100: the maximum)."""
    if not values:
        return float("nan")
    if q >= 100:
        return max(values)
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Setup:
    stack: Stack
    keys: dict[str, str] = field(default_factory=dict)
    campaigns: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.stack.database_url
        return self.stack.database_url

    @property
    def bootstrap(self) -> str:
        assert self.stack.kafka_bootstrap
        return self.stack.kafka_bootstrap


ENV = {
    "scoring": {},
    "rewards": {"REWARDS_SETTLE_INTERVAL_S": "0"},
    "notify": {},
    "ingest": {},
}


async def keys_and_campaigns(s: Setup, now: datetime) -> None:
    """Keys, the open reward window and the two live campaigns (rewards and notify running)."""
    roles = {
        "live": [Role.PLATFORM], "importer": [Role.IMPORTER], "owner": [Role.CAMPAIGN_OWNER],
        "approver": [Role.APPROVER], "admin": [Role.ADMIN], "viewer": [Role.VIEWER],
    }  # fmt: skip
    for name, rs in roles.items():
        s.keys[name] = (await issue_api_key(s.url, name, rs, 1e6, s.bootstrap)).secret
    rewards, notify = s.stack.services["rewards"].url, s.stack.services["notify"].url
    await wait_keys_known(rewards, "/v1/templates", [s.keys[n] for n in ("owner", "approver")])
    await wait_keys_known(notify, "/v1/policies", [s.keys["admin"]])
    await open_window(notify, s.keys["admin"])
    tz = ZoneInfo(os.environ.get("ENGAGE_TIMEZONE", "Asia/Shanghai"))
    starts_at, ends_at = campaign_window(now, tz)
    keys = CampaignKeys(s.keys["owner"], s.keys["approver"], s.keys["admin"])
    s.campaigns = await launch_campaigns(rewards, keys, starts_at, ends_at, CAMPAIGNS)


async def post_all(s: Setup, batches: list[list[dict[str, Any]]]) -> tuple[PostReport, float]:
    ingest = s.stack.services["ingest"].url
    report = PostReport()
    start = time.perf_counter()
    await post_events(ingest, s.keys["importer"], batches[0], path="/v1/events:import",
                      batch_size=500, label="last month", report=report)  # fmt: skip
    await post_events(ingest, s.keys["live"], batches[1], batch_size=100, label="this month",
                      report=report)  # fmt: skip
    return report, time.perf_counter() - start


async def grant_latencies(s: Setup, now: datetime) -> dict[str, list[float]]:
    """received_at of the qualifying event → grant row, and → notice handed to the provider."""
    tz = ZoneInfo(os.environ.get("ENGAGE_TIMEZONE", "Asia/Shanghai"))
    starts_at, ends_at = campaign_window(now, tz)
    mobile: dict[str, datetime] = {}
    friends: dict[str, list[datetime]] = defaultdict(list)
    seen: set[str] = set()

    def on_record(record: Any) -> None:
        env = decode_envelope(record.value)
        e = env.event
        if e.event_id in seen or not (starts_at <= e.occurred_at < ends_at):
            return
        seen.add(e.event_id)
        if e.type == "message" and e.client == "mobile":
            prior = mobile.get(e.user_id)
            mobile[e.user_id] = env.received_at if prior is None else min(prior, env.received_at)
        elif e.type == "friend_added":
            friends[e.user_id].append(env.received_at)

    await read_topic(s.bootstrap, EVENTS_TOPIC, on_record)
    trigger = {
        s.campaigns["play_and_get_gifts"]: mobile,
        s.campaigns["invite_friends"]: {u: sorted(t)[1] for u, t in friends.items() if len(t) > 1},
    }
    conn = await asyncpg.connect(s.url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            "SELECT g.campaign_id, g.user_id, g.created_at, n.updated_at AS sent_at, n.status "
            "FROM rewards.grants g LEFT JOIN notify.notifications n "
            "ON n.source = 'grant:' || g.grant_id"
        )
    finally:
        await conn.close()
    out: dict[str, list[float]] = {"grant": [], "notice": []}
    for r in rows:
        at = trigger[r["campaign_id"]].get(r["user_id"])
        if at is None:
            continue
        out["grant"].append((r["created_at"] - at).total_seconds())
        if r["status"] in ("sent", "delivered"):
            out["notice"].append((r["sent_at"] - at).total_seconds())
    return out


async def references(results: dict[str, Any], events: list[dict[str, Any]]) -> None:
    with TemporaryDirectory() as tmp:
        stack = Stack(var_dir=Path(tmp), fixed_ports=False).start_infra()
        try:
            assert stack.kafka_bootstrap
            await ensure_topics(stack.kafka_bootstrap, {RAW_TOPIC: 6})
            produce = await raw_producer_rate(stack.kafka_bootstrap, events, topic=RAW_TOPIC)
            consume = await raw_consume_rate(stack.kafka_bootstrap, len(events), topic=RAW_TOPIC)
        finally:
            stack.stop()
    results["raw_produce_per_s"], results["raw_consume_per_s"] = produce, consume
    print("\nReferences (same broker build, scratch topic, same events)")
    row("raw producer, acks=all, pre-built payloads", f"{produce:,.0f}/s")
    row("raw consumer + JSON decode", f"{consume:,.0f}/s")


async def pipeline(results: dict[str, Any], config: SimConfig, now: datetime) -> None:
    history, live = split_months(config, now)
    batches = [deliveries(history, config), deliveries(live, config)]
    with TemporaryDirectory() as tmp:
        s = Setup(Stack(var_dir=Path(tmp), fixed_ports=False).start_infra())
        try:
            for name in SERVICES:
                s.stack.start_service(name, env=ENV[name])
            await keys_and_campaigns(s, now)
            pids = {n: s.stack.services[n].proc.pid for n in SERVICES}
            started = time.perf_counter()
            report, posting = await post_all(s, batches)
            distinct = len(report.accepted_ids)
            await wait_processed(s.url, distinct, "scoring", timeout_s=1800)
            scored = time.perf_counter() - started
            await wait_outbox_empty(s.url, "scoring", "changelog_outbox", 1800)
            await wait_consumed(s.url, s.bootstrap, "rewards", METRICS, 1800)
            await wait_outbox_empty(s.url, "rewards", "grants_outbox", 1800)
            await wait_consumed(s.url, s.bootstrap, "notify", GRANTS, 1800)
            await wait_notices_ended(s.url, 600)
            drained = time.perf_counter() - started
            rss = {n: (_status_kb(p, "VmHWM"), _status_kb(p, "VmRSS")) for n, p in pids.items()}
            granted = await _grants_by_campaign(s)
            lat = await grant_latencies(s, now)
        finally:
            s.stack.stop()
    results["pipeline"] = {
        "deliveries": report.sent, "distinct_events": distinct, "posting_s": posting,
        "scored_s": scored, "drained_s": drained, "ingest_per_s": report.sent / posting,
        "through_per_s": distinct / drained,
        "grant_latency_s": {"n": len(lat["grant"]), "p50": pct(lat["grant"], 50),
                            "p99": pct(lat["grant"], 99), "max": pct(lat["grant"], 100)},
        "notice_latency_s": {"n": len(lat["notice"]), "p50": pct(lat["notice"], 50),
                             "p99": pct(lat["notice"], 99), "max": pct(lat["notice"], 100)},
        "rss_mb": {n: {"peak": a, "end": b} for n, (a, b) in rss.items()},
        "grants": granted,
    }  # fmt: skip
    p = results["pipeline"]
    print(f"\nPipeline: four services together ({config.users:,} users, {config.groups} groups)")
    row("deliveries posted (incl. resends)", f"{report.sent:,}")
    row("events/s accepted by ingest", f"{p['ingest_per_s']:,.0f}/s",
        f"{p['ingest_per_s'] / results['raw_produce_per_s']:.0%} of raw")  # fmt: skip
    row("distinct events, posted → all scored", f"{distinct:,}", f"{scored:.1f} s")
    row("grants by campaign", str(granted))
    row("… → every grant notified (drained)", f"{drained:.1f} s",
        f"{p['through_per_s']:,.0f} ev/s")  # fmt: skip
    for what in ("grant", "notice"):
        d = p[f"{what}_latency_s"]
        row(f"received_at → {what} (n={d['n']:,})", f"p50 {d['p50']:.2f} s",
            f"p99 {d['p99']:.2f} s", f"max {d['max']:.2f} s")  # fmt: skip
    for n, v in p["rss_mb"].items():
        row(f"{n} memory (peak / end RSS)", f"{v['peak']:.0f} MB", f"{v['end']:.0f} MB")


async def _grants_by_campaign(s: Setup) -> dict[str, int]:
    conn = await asyncpg.connect(s.url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch("SELECT campaign_id, count(*) FROM rewards.grants GROUP BY 1")
    finally:
        await conn.close()
    names = {cid: t for t, cid in s.campaigns.items()}
    return {names[r[0]]: int(r[1]) for r in rows}


async def _records(bootstrap: str, topic: str) -> int:
    n = 0

    def on_record(record: Any) -> None:
        nonlocal n
        n += 1

    await read_topic(bootstrap, topic, on_record)
    return n


async def limits(results: dict[str, Any], config: SimConfig, now: datetime) -> None:
    """One service at a time over the whole backlog the previous one left."""
    history, live = split_months(config, now)
    batches = [deliveries(history, config), deliveries(live, config)]
    out: dict[str, Any] = {}
    with TemporaryDirectory() as tmp:
        s = Setup(Stack(var_dir=Path(tmp), fixed_ports=False).start_infra())
        try:
            for name in SERVICES:  # all four create their schemas and topics, campaigns go live
                s.stack.start_service(name, env=ENV[name])
            await keys_and_campaigns(s, now)
            for name in ("scoring", "rewards", "notify"):
                s.stack.services[name].stop()
            report, posting = await post_all(s, batches)
            out["ingest"] = report.sent / posting
            distinct = len(report.accepted_ids)

            t = time.perf_counter()
            s.stack.start_service("scoring", env=ENV["scoring"])
            await wait_processed(s.url, distinct, "scoring", timeout_s=1800)
            await wait_outbox_empty(s.url, "scoring", "changelog_outbox", 1800)
            out["scoring"] = distinct / (time.perf_counter() - t)
            s.stack.services["scoring"].stop()

            metrics = sum((await topic_ends(s.bootstrap, METRICS)).values())
            before = sum((await stored_offsets(s.url, "rewards", METRICS)).values())
            t = time.perf_counter()
            s.stack.start_service("rewards", env=ENV["rewards"])
            await wait_consumed(s.url, s.bootstrap, "rewards", METRICS, 1800)
            await wait_outbox_empty(s.url, "rewards", "grants_outbox", 1800)
            out["rewards"] = (metrics - before) / (time.perf_counter() - t)
            out["rewards_records"] = metrics - before

            grants = sum((await topic_ends(s.bootstrap, GRANTS)).values())
            t = time.perf_counter()
            s.stack.start_service("notify", env=ENV["notify"])
            await wait_consumed(s.url, s.bootstrap, "notify", GRANTS, 1800)
            await wait_notices_ended(s.url, 600)
            out["notify"] = grants / (time.perf_counter() - t)
            out["notify_records"] = grants
            out["grants"] = await _grants_by_campaign(s)
            out["notices"] = await count_rows(s.url, "SELECT count(*) FROM notify.notifications")
            out["grant_records_read"] = await _records(s.bootstrap, GRANTS)
            assert await processed_events(s.url, "scoring") == distinct
        finally:
            s.stack.stop()
    results["limits"] = out
    raw_p, raw_c = results["raw_produce_per_s"], results["raw_consume_per_s"]
    print("\nLimits: one service at a time, the machine to itself (same events, fresh stack)")
    row("ingest alone (deliveries/s)", f"{out['ingest']:,.0f}/s",
        f"{out['ingest'] / raw_p:.0%} of raw produce")  # fmt: skip
    row("scoring alone (events/s, incl. start-up)", f"{out['scoring']:,.0f}/s",
        f"{out['scoring'] / raw_c:.1%} of raw consume")  # fmt: skip
    row(f"rewards alone ({out['rewards_records']:,} metric records)", f"{out['rewards']:,.0f}/s",
        f"{out['rewards'] / raw_c:.1%} of raw consume")  # fmt: skip
    row(f"notify alone ({out['notify_records']:,} grant records)", f"{out['notify']:,.0f}/s")
    row("grants by campaign", str(out["grants"]))
    row(
        "notices / grant records read back", f"{out['notices']:,}", f"{out['grant_records_read']:,}"
    )
    p = results.get("pipeline")
    if p:
        row("pipeline / scoring alone (distinct events/s)",
            f"{p['through_per_s'] / out['scoring']:.0%}")  # fmt: skip


async def main(users: int, groups: int, parts: list[str]) -> None:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "users": users,
        "groups": groups,
    }
    print(f"\nEnd-to-end benchmark — {results['date']} — {results['machine']}")
    config = SimConfig(seed=7, users=users, groups=groups)
    now = datetime.now(UTC)
    history, live = split_months(config, now)
    await references(results, deliveries(history + live, config))
    if "pipeline" in parts:
        await pipeline(results, config, now)
    if "limits" in parts:
        await limits(results, config, now)
    OUT.mkdir(exist_ok=True)
    (OUT / f"e2e-{results['date'][:10]}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--groups", type=int, default=120)
    parser.add_argument("--parts", default="pipeline,limits")
    args = parser.parse_args()
    asyncio.run(main(args.users, args.groups, args.parts.split(",")))
