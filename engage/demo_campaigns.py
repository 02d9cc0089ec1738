"""The campaign part of `engage demo`: the six SPEC §1 campaigns through the rewards admin API.

Created from templates by a campaign owner, approved by a different principal and activated
before the events flow (so this month's thresholds fire in real time); once the pipeline has
drained, groups are enrolled by their owners and last month is settled; then a crediting system
reports most grants fulfilled on engage.fulfilment.v1 (SPEC §11).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka import AIOKafkaProducer

from services.rewards.domain.templates import TEMPLATES as CAMPAIGN_TEMPLATES
from shared.records import FulfilmentRecord
from shared.topics import FULFILMENT_TOPIC

# the six SPEC §1 campaigns, in the spec's order (the annual ranking and the weekend boost,
# SPEC §10, are templates too, not launched by the demo)
TEMPLATES = tuple(CAMPAIGN_TEMPLATES)[:6]
# the campaigns groups enroll in (the daily check-in draw is open to their members)
ENROLLING = ("my_fetion_my_group", "tribe_chief", "daily_checkin_draw")


@dataclass(frozen=True)
class CampaignKeys:
    owner: str
    approver: str
    admin: str


def _client(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=300, headers={"Authorization": f"Bearer {key}"})


def campaign_window(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """From the first of last month to the first of next month, local time."""
    this = now.astimezone(tz).date().replace(day=1)
    last = (this - timedelta(days=1)).replace(day=1)
    following = (this + timedelta(days=32)).replace(day=1)
    return (
        datetime(last.year, last.month, 1, tzinfo=tz),
        datetime(following.year, following.month, 1, tzinfo=tz),
    )


async def launch_campaigns(
    rewards_url: str,
    keys: CampaignKeys,
    starts_at: datetime,
    ends_at: datetime,
    templates: tuple[str, ...] = TEMPLATES,
) -> dict[str, str]:
    """Create, submit, approve (another principal) and activate them; template → id."""
    out: dict[str, str] = {}
    async with (
        _client(rewards_url, keys.owner) as owner,
        _client(rewards_url, keys.approver) as approver,
    ):
        for template in templates:
            r = await owner.post(
                "/v1/campaigns",
                json={
                    "template": template,
                    "starts_at": starts_at.isoformat(),
                    "ends_at": ends_at.isoformat(),
                },
            )
            r.raise_for_status()
            cid = r.json()["campaign_id"]
            (await owner.post(f"/v1/campaigns/{cid}/versions/1:submit")).raise_for_status()
            (await approver.post(f"/v1/campaigns/{cid}/versions/1:approve")).raise_for_status()
            (await owner.post(f"/v1/campaigns/{cid}:activate")).raise_for_status()
            out[template] = cid
    return out


async def enroll_groups(
    rewards_url: str,
    credential: Callable[[str], str],
    campaign_ids: list[str],
    owners: dict[str, str],
) -> dict[str, int]:
    """Each group enrolled by its owner, with `credential(owner_id)` (the owner's user token,
    SPEC §14); dissolved groups are refused (409)."""
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=rewards_url, timeout=300) as client:
        for cid in campaign_ids:
            for group_id, owner_id in sorted(owners.items()):
                r = await client.post(
                    f"/v1/campaigns/{cid}/enrollments",
                    json={"group_id": group_id, "owner_id": owner_id},
                    headers={"Authorization": f"Bearer {credential(owner_id)}"},
                )
                statuses[r.status_code] += 1
    return {str(k): v for k, v in statuses.items()}


async def settle_now(rewards_url: str, admin_key: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with _client(rewards_url, admin_key) as admin:
        while True:
            r = await admin.post("/v1/settlements:run")
            if r.status_code != 503 or asyncio.get_running_loop().time() > deadline:
                r.raise_for_status()
                result: dict[str, Any] = r.json()
                return result
            await asyncio.sleep(1)


async def _all(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params = {"limit": 500, **params}
    while True:
        page = (await client.get(path, params=params)).json()
        items += page["items"]
        if not page["next_cursor"]:
            return items
        params["cursor"] = page["next_cursor"]


def verify_draw(draw: dict[str, Any], winners: int, repeat: bool) -> dict[str, bool]:
    """What anyone can check from a published draw (README: 'Recomputing a draw')."""
    seed, entries = draw["seed"], draw["entries"]
    ranked = sorted(
        entries, key=lambda e: hmac.new(seed.encode(), e.encode(), hashlib.sha256).hexdigest()
    )
    if not repeat:  # a user's later tickets are skipped
        seen: set[str] = set()
        unique = []
        for entry in ranked:
            if entry.split("#")[0] not in seen:
                seen.add(entry.split("#")[0])
                unique.append(entry)
        ranked = unique
    return {
        "seed matches the hash published at activation": hashlib.sha256(seed.encode()).hexdigest()
        == draw["seed_sha256"],
        "entries match their frozen digest": hashlib.sha256("\n".join(entries).encode()).hexdigest()
        == draw["entries_digest"],
        "winners are the smallest HMAC-SHA256(seed, entry)": ranked[:winners] == draw["winners"],
    }


async def print_campaigns(
    rewards_url: str, viewer_key: str, campaigns: dict[str, str], settled: dict[str, Any]
) -> bool:
    """Winners, grants by kind, budget used and one draw's verification; True if it verifies."""
    print("\nCampaigns (rewards)")
    seconds = [s["seconds"] for s in settled["settled"]]
    print(
        f"  settled {len(seconds)} periods (last month's rank/scaled/lottery rules and every "
        f"due day's draw) in {sum(seconds):.2f}s"
        + (f", slowest {max(seconds):.2f}s" if seconds else "")
    )
    verified = True
    async with _client(rewards_url, viewer_key) as c:
        for template, cid in campaigns.items():
            campaign = (await c.get(f"/v1/campaigns/{cid}")).json()
            name = campaign["versions"][-1]["definition"]["name"]
            grants = await _all(c, "/v1/grants", campaign_id=cid)
            by_status = Counter(g["status"] for g in grants)
            units: dict[str, int] = defaultdict(int)
            for g in grants:
                if g["status"] == "granted":
                    for item in g["items"]:
                        units[item["kind"]] += item["amount"]
            periods = sorted({g["period"] for g in grants})
            print(f"\n  {name} ({cid}, version {campaign['live_version']})")
            print(
                f"    grants {len(grants):,} {dict(by_status)} over "
                f"{len(periods)} period(s)" + (f": {periods[0]} … {periods[-1]}" if periods else "")
            )
            print(
                "    granted units: "
                + (", ".join(f"{k} {v:,}" for k, v in sorted(units.items())) or "none")
            )
            for b in campaign["budgets"]:
                print(
                    f"    budget {b['kind']}: {b['spent']:,} of {b['total']:,} used "
                    f"({b['remaining']:,} left)"
                )
            if template == "my_fetion_my_group":
                owners = [g for g in grants if g["role"] == "owner"]
                top = sorted(
                    owners, key=lambda g: (g["explanation"]["rank"], g["explanation"]["partition"])
                )[:5]
                print(
                    "    winners (rank 1): "
                    + ", ".join(
                        f"{g['explanation']['partition']} {g['group_id']} "
                        f"(vitality {g['explanation']['vitality']:,.0f})"
                        for g in top
                    )
                )
            if template == "tribe_chief":
                best = sorted(grants, key=lambda g: -g["items"][0]["amount"])[:3]
                print(
                    "    largest credits: "
                    + ", ".join(
                        f"{g['group_id']} {g['items'][0]['amount'] / 100:.0f} yuan "
                        f"({g['explanation']['units']:.0f} effective active members)"
                        for g in best
                    )
                )
            if template == "daily_checkin_draw":
                draws = (await c.get(f"/v1/campaigns/{cid}/draws")).json()
                drawn = [d for d in draws if d["drawn_at"]]
                print(
                    f"    draws: {len(drawn)} drawn, {len(draws) - len(drawn)} still sealed "
                    "(seed hashes published at activation)"
                )
                if drawn:
                    last = drawn[-1]
                    draw = (
                        await c.get(f"/v1/campaigns/{cid}/draws/daily-draw/{last['period']}")
                    ).json()
                    rule = campaign["versions"][-1]["definition"]["rules"][0]
                    checks = verify_draw(draw, rule["winners"], rule["repeat_winners"])
                    print(
                        f"    verification of the {last['period']} draw "
                        f"({draw['entry_count']} entries, {draw['winner_count']} winners):"
                    )
                    for what, ok in checks.items():
                        print(f"      {'✔' if ok else '✘'} {what}")
                    verified = verified and all(checks.values())
    return verified


async def campaign_examples(
    rewards_url: str, key: str, campaigns: dict[str, str]
) -> dict[str, list[str]]:
    """Per campaign name, some users it granted something to (for an example notice)."""
    out: dict[str, list[str]] = {}
    async with _client(rewards_url, key) as c:
        for cid in campaigns.values():
            campaign = (await c.get(f"/v1/campaigns/{cid}")).json()
            page = (await c.get("/v1/grants", params={"campaign_id": cid, "limit": 50,
                                                      "status": "granted"})).json()  # fmt: skip
            if page["items"]:
                name = campaign["versions"][-1]["definition"]["name"]
                out[name] = [g["user_id"] for g in page["items"]]
    return out


def group_owners(events: list[dict[str, Any]]) -> dict[str, str]:
    """Each group's owner: the actor of its earliest group_created."""
    first: dict[str, tuple[datetime, str, str]] = {}
    for e in events:
        if e["type"] == "group_created":
            key = (datetime.fromisoformat(e["occurred_at"]), e["event_id"], e["user_id"])
            if e["group_id"] not in first or key < first[e["group_id"]]:
                first[e["group_id"]] = key
    return {g: v[2] for g, v in first.items()}


@dataclass(frozen=True)
class FulfilmentPlan:
    """What the demo's crediting system reports: most grants fulfilled, a few failed, and a
    few left unreported — among them some already past their fulfil-by day (overdue)."""

    fulfilled: list[int]
    failed: list[int]
    unreported: list[int]


def plan_fulfilment(grants: list[dict[str, Any]]) -> FulfilmentPlan:
    """Of the granted grants: 1 in 20 of those past their day left unreported (at least one,
    if any is past it), 1 in 25 of the others reported failed and 1 in 10 left pending; the
    rest fulfilled. Deterministic (by grant id), so a rerun reports the same."""
    fulfilled: list[int] = []
    failed: list[int] = []
    unreported: list[int] = []
    late = sorted(g["grant_id"] for g in grants if g["fulfilment"] == "overdue")
    on_time = sorted(g["grant_id"] for g in grants if g["fulfilment"] == "pending")
    for i, gid in enumerate(late):
        (unreported if i % 20 == 0 else fulfilled).append(gid)
    for i, gid in enumerate(on_time):
        (failed if i % 25 == 1 else unreported if i % 10 == 0 else fulfilled).append(gid)
    return FulfilmentPlan(fulfilled, failed, unreported)


async def fulfil_through_topic(
    rewards_url: str, viewer_key: str, bootstrap: str, campaigns: dict[str, str]
) -> FulfilmentPlan:
    """The crediting system's reports, as records on engage.fulfilment.v1 (key = grant id)."""
    async with _client(rewards_url, viewer_key) as c:
        grants = [
            g
            for cid in campaigns.values()
            for g in await _all(c, "/v1/grants", campaign_id=cid, status="granted")
        ]
    plan = plan_fulfilment(grants)
    now = datetime.now(UTC)
    reports = [
        FulfilmentRecord(grant_id=gid, status="fulfilled", reference=f"demo-credit-{gid}", at=now)
        for gid in plan.fulfilled
    ] + [
        FulfilmentRecord(grant_id=gid, status="failed", reference=f"demo-credit-{gid}",
                         reason="account closed", at=now)
        for gid in plan.failed
    ]  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for report in reports:
            await producer.send(
                FULFILMENT_TOPIC,
                report.model_dump_json().encode(),
                key=str(report.grant_id).encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()
    return plan


async def print_fulfilment(
    rewards_url: str, viewer_key: str, campaigns: dict[str, str], plan: FulfilmentPlan
) -> dict[str, int]:
    """Granted grants by fulfilment, as the rewards API reads them now."""
    async with _client(rewards_url, viewer_key) as c:
        counts = {
            status: sum(
                [
                    len(await _all(c, "/v1/grants", campaign_id=cid, fulfilment=status))
                    for cid in campaigns.values()
                ]
            )
            for status in ("fulfilled", "pending", "overdue", "failed")
        }
    print(
        f"\nFulfilment (reports on {FULFILMENT_TOPIC}: {len(plan.fulfilled):,} fulfilled, "
        f"{len(plan.failed):,} failed; {len(plan.unreported):,} grants left unreported)"
    )
    print("  granted grants by fulfilment: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if not counts["overdue"]:
        print("  (none overdue: no granted grant's fulfil-by day has passed yet this month)")
    return counts
