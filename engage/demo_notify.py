"""The notification part of `engage demo`: the month's reward notices through the sandbox."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from engage.progress import count_rows, wait_consumed, wait_outbox_empty

ALWAYS_OPEN = {"window_start": "00:00", "window_end": "00:00"}


async def open_window(notify_url: str, admin_key: str, category: str = "reward") -> None:
    """The demo runs at any hour: the category's notices may go out around the clock (the
    default window is 08:00–21:00 local; outside it they would be `deferred`)."""
    async with httpx.AsyncClient(
        base_url=notify_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
    ) as c:
        policies = (await c.get("/v1/policies")).json()
        policy = next(p for p in policies if p["category"] == category)
        body = {k: policy[k] for k in ("daily_cap", "ttl_seconds", "marketing")} | ALWAYS_OPEN
        (await c.put(f"/v1/policies/{category}", json=body)).raise_for_status()


async def wait_notices(
    database_url: str, bootstrap: str, notify_url: str, key: str, timeout_s: float = 300
) -> dict[str, int]:
    """Wait until rewards' grants reached notify and every notice ended; counts by status."""
    await wait_outbox_empty(database_url, "rewards", "grants_outbox")
    await wait_consumed(database_url, bootstrap, "notify", "engage.grants.v1")
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(
        base_url=notify_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:
        while True:
            r = await c.get("/v1/notifications/counts", params={"source_prefix": "grant:"})
            counts: dict[str, int] = r.json()["counts"]
            if not any(counts.get(s) for s in ("queued", "sending")):
                return counts
            if asyncio.get_running_loop().time() > deadline:
                return counts
            await asyncio.sleep(0.5)


async def print_notices(
    notify_url: str, key: str, counts: dict[str, int], examples: dict[str, list[str]]
) -> None:
    """Counts by status and, per campaign, one notice as the user received it."""
    print("\nNotifications (notify, sandbox provider)")
    print(
        "  reward notices by status: "
        + ", ".join(f"{s} {n:,}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    )
    print(
        "  (daily cap 3 messages per user and local day: a user's waiting rewards go out as one "
        "digest; what does not fit is deferred to their next day, never suppressed)"
    )
    async with httpx.AsyncClient(
        base_url=notify_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:
        for campaign, users in examples.items():
            for user in users:  # the first whose notice has gone out (alone or in a digest)
                page = (
                    await c.get(f"/v1/users/{user}/notifications", params={"limit": 500})
                ).json()
                notice: dict[str, Any] | None = next(
                    (
                        n
                        for n in page["items"]
                        if n["status"] == "delivered" and n["params"]["campaign"] == campaign
                    ),
                    None,
                )
                if notice is not None:
                    print(f"  {campaign} → {user} ({notice['sent_channel']}): {notice['body']}")
                    break


async def print_every_winner_told(database_url: str) -> bool:
    """SPEC §11: no reward notice is lost to the daily cap. Prints the digests and what waits
    for the next day; True when no reward notice was suppressed."""
    reward = "FROM notify.notifications WHERE category = 'reward'"
    suppressed = await count_rows(
        database_url, f"SELECT count(*) {reward} AND status = 'suppressed'"
    )
    digests = await count_rows(
        database_url, f"SELECT count(DISTINCT digest_id) {reward} AND digest_id IS NOT NULL"
    )
    in_digests = await count_rows(
        database_url, f"SELECT count(*) {reward} AND digest_id IS NOT NULL"
    )
    waiting = await count_rows(
        database_url, f"SELECT count(*) {reward} AND status = 'deferred' AND reason = 'daily_cap'"
    )
    print(
        f"  every winner told: {in_digests or 0:,} reward notices went out in {digests or 0:,} "
        f"digests; {waiting or 0:,} wait for the user's next day; suppressed: {suppressed or 0}"
    )
    return not suppressed


@dataclass(frozen=True, slots=True)
class SegmentBroadcast:
    broadcast_id: int
    segment: dict[str, Any]
    recipients: int
    text: str
    counts: dict[str, int]
    sample: list[str]


async def broadcast_to_segment(
    notify_url: str,
    keys: tuple[str, str, str],
    month: str,
    province: str,
    top: int = 3,
) -> SegmentBroadcast:
    """A service notice to a segment (SPEC §6): the members of the month's top groups of one
    province, as scoring ranks them. The owner writes the template and the broadcast, a second
    principal approves the text and recipients shown to them, notify fans it out at a pace.
    `keys`: the owner's, the approver's and an admin's (who opens the service window: the demo
    runs at any hour)."""
    owner_key, approver_key, admin_key = keys
    await open_window(notify_url, admin_key, "service")
    segment = {"kind": "top_groups", "month": month, "province": province, "top": top}
    text = "感谢您的群在{month}月活跃榜名列前茅！本月继续聊，活动奖励等着您。"
    async with (
        httpx.AsyncClient(base_url=notify_url, timeout=60, headers=_auth(owner_key)) as owner,
        httpx.AsyncClient(base_url=notify_url, timeout=60, headers=_auth(approver_key)) as lead,
    ):
        template = {"category": "service", "text": text, "placeholders": ["month"]}
        (
            await owner.put("/v1/templates/top_groups_thanks/im/zh-CN", json=template)
        ).raise_for_status()
        body = {"name": f"Top groups {month} {province}", "template": "top_groups_thanks",
                "category": "service", "params": {"month": month[-2:].lstrip("0")},
                "segment": segment, "rate_per_s": 200}  # fmt: skip
        created = await owner.post("/v1/broadcasts", json=body)
        created.raise_for_status()
        bid = int(created.json()["broadcast_id"])
        approved = await lead.post(f"/v1/broadcasts/{bid}:approve")
        approved.raise_for_status()
        shown = approved.json()["approved"]
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            counts: dict[str, int] = (await lead.get(f"/v1/broadcasts/{bid}")).json()["counts"]
            waiting = any(counts.get(s) for s in ("queued", "sending"))
            if not waiting or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
    return SegmentBroadcast(
        bid, segment, int(shown["recipients"]), shown["texts"][0]["text"], counts,
        list(shown["sample"][:5]),
    )  # fmt: skip


def render_broadcast(b: SegmentBroadcast) -> str:
    seg = b.segment
    lines = [
        f"\nBroadcast to a segment (notify #{b.broadcast_id}): members of the top {seg['top']} "
        f"groups of {seg['province']} in {seg['month']} — written by the owner, approved by a "
        "second principal who saw the text and the recipients",
        f"  recipients {b.recipients:,}; by status: "
        + ", ".join(f"{s} {n:,}" for s, n in sorted(b.counts.items(), key=lambda kv: -kv[1])),
        f"  text approved: {b.text}",
        f"  first recipients: {', '.join(b.sample)}",
    ]
    return "\n".join(lines)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
