"""Notify against a real broker and PostgreSQL (SPEC §6, §11): the daily cap under concurrency
with two replicas (reward digests, none suppressed), replayed grants, a provider failing half
its sends, the IM webhook's signature and the fallback to SMS, templates validated on save."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from engage.progress import wait_consumed
from engage.stack import ServiceProcess, Stack
from engage.topic_audit import read_topic
from services.notify.providers.im import signature
from tests.builders import make_event
from tests.integration.conftest import Keys
from tests.integration.notify_support import (
    ALWAYS_OPEN,
    GRANTS,
    WAITING_TODAY,
    Deployment,
    grant,
    publish,
)

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
async def capped(stack: Stack, keys: Keys) -> Deployment:
    d = Deployment(stack, keys, "notify_cap", replicas=2)
    await d.ready()
    return d


async def test_fifty_concurrent_grants_for_one_user_send_exactly_three(
    capped: Deployment,
) -> None:
    # SPEC §11 (was: 3 delivered, 47 suppressed): the cap limits messages, not rewards. The 50
    # notices go out in three digests (at most 20 rewards each); none is suppressed, and any
    # that did not fit today's three slots waits for the next local day.
    bootstrap = capped.stack.kafka_bootstrap
    assert bootstrap
    await publish(bootstrap, [grant(1000 + i, "cap-user") for i in range(50)])
    counts = await capped.settled(50, pending=WAITING_TODAY)
    assert set(counts) <= {"delivered", "deferred"} and sum(counts.values()) == 50, counts
    sent = await capped.sandbox("cap-user")
    assert len(sent) == 3
    items = await capped.notifications("cap-user")
    delivered = Counter(n["digest_id"] or n["id"] for n in items if n["status"] == "delivered")
    assert set(delivered) == {m["notification_id"] for m in sent}  # each in exactly one message
    for m in sent:
        assert m["body"].startswith(f"恭喜！您获得{delivered[m['notification_id']]}项奖励：")
        assert "「Play and get gifts」2元话费、20条短信，将于2026-12-10前到账" in m["body"]
    assert {n["reason"] for n in items if n["status"] == "deferred"} <= {"daily_cap"}
    async with capped.client(capped.keys.viewer) as c:
        page = (await c.get("/v1/users/cap-user/notifications", params={"limit": 500})).json()
    assert page["counts"] == counts


async def test_replayed_grants_send_nothing_more(capped: Deployment) -> None:
    url, bootstrap = capped.stack.database_url, capped.stack.kafka_bootstrap
    assert url and bootstrap
    docs = [grant(2000 + i, f"replay-{i}") for i in range(5)]
    await publish(bootstrap, docs)
    before = await capped.settled(55, pending=WAITING_TODAY)
    assert before.get("delivered", 0) >= 8 and "suppressed" not in before
    await publish(bootstrap, docs + [grant(1000 + i, "cap-user") for i in range(50)])
    await wait_consumed(url, bootstrap, "notify_cap", GRANTS)
    assert await capped.settled(55, pending=WAITING_TODAY) == before
    assert len(await capped.sandbox("cap-user")) == 3
    for i in range(5):  # a single reward notice still reads as it always did
        (single,) = await capped.sandbox(f"replay-{i}")
        assert single["body"].startswith("恭喜！您在「Play and get gifts」活动中获得")


async def test_revoked_and_exhausted_grants_are_not_announced(capped: Deployment) -> None:
    url, bootstrap = capped.stack.database_url, capped.stack.kafka_bootstrap
    assert url and bootstrap
    await publish(
        bootstrap,
        [grant(3000, "quiet", "budget_exhausted"), {**grant(3001, "quiet"), "event": "revoked"}],
    )
    await wait_consumed(url, bootstrap, "notify_cap", GRANTS)
    assert await capped.sandbox("quiet") == []


async def test_provider_failing_half_the_sends_loses_nothing_and_doubles_nothing(
    stack: Stack, keys: Keys
) -> None:
    # Two attempts (IM, then SMS, each) at 50% failure: ~6% end failed, so the DLQ path runs.
    d = Deployment(
        stack, keys, "notify_flaky", replicas=1, NOTIFY_SANDBOX_FAIL_RATE="0.5",
        NOTIFY_MAX_ATTEMPTS="2",
    )  # fmt: skip
    await d.ready(daily_cap=1000)
    bootstrap = stack.kafka_bootstrap
    assert bootstrap
    users = [f"flaky-{i}" for i in range(100)]
    await publish(bootstrap, [grant(5000 + i, u) for i, u in enumerate(users)])
    counts = await d.settled(100, "grant:50", timeout_s=120)
    assert set(counts) <= {"delivered", "failed"}, counts
    delivered = sum([len(await d.sandbox(u)) for u in users])
    assert delivered == counts.get("delivered", 0)  # each delivered once, none twice
    dead: list[dict[str, Any]] = []
    await read_topic(
        bootstrap,
        "engage.notify.dlq",
        lambda r: dead.append(orjson.loads(r.value)) if r.value and b"flaky-" in r.value else None,
    )
    assert len(dead) == counts.get("failed", 0)
    assert all(x["reason"] for x in dead)


class _ImPlatform(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real platform behind a load balancer
    secret = "s3cret"
    received: ClassVar[list[dict[str, Any]]] = []
    refused_users: ClassVar[set[str]] = {"im-down"}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ts = self.headers["X-Engage-Timestamp"]
        ok = self.headers["X-Engage-Signature"] == signature(self.secret, ts, body)
        doc = orjson.loads(body)
        self.received.append({**doc, "signature_ok": ok})
        status = 401 if not ok else 503 if doc["user_id"] in self.refused_users else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def im_platform() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImPlatform)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/push"
    finally:
        server.shutdown()


async def test_im_webhook_is_signed_and_falls_back_to_sms(
    stack: Stack, keys: Keys, im_platform: str
) -> None:
    d = Deployment(
        stack, keys, "notify_im", replicas=1,
        NOTIFY_IM_WEBHOOK_URL=im_platform, NOTIFY_IM_WEBHOOK_SECRET=_ImPlatform.secret,
    )  # fmt: skip
    await d.ready()
    bootstrap = stack.kafka_bootstrap
    assert bootstrap
    await publish(bootstrap, [grant(7000, "im-up"), grant(7001, "im-down")])
    counts = await d.settled(2, "grant:700")
    pushed = [r for r in _ImPlatform.received if r["user_id"] == "im-up"]
    assert counts == {"sent": 1, "delivered": 1}, (counts, _ImPlatform.received)
    assert len(pushed) == 1 and pushed[0]["signature_ok"]
    assert "Play and get gifts" in pushed[0]["text"]
    async with d.client() as c:
        down = (await c.get("/v1/users/im-down/notifications")).json()["items"][0]
    assert (down["status"], down["sent_channel"]) == ("delivered", "sms")
    assert "回TD退订" in down["body"]  # the SMS template, not the IM one


async def test_templates_are_validated_when_saved(capped: Deployment) -> None:
    async with capped.client(capped.keys.admin) as c:
        bad = {"category": "marketing", "text": "你好{name}，{gift}到了", "placeholders": ["name"]}
        r = await c.put("/v1/templates/promo/sms/zh-CN", json=bad)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"] == [
            {"field": "text", "message": "text: unknown placeholder '{gift}' (declare it)"}
        ]
        good = {**bad, "placeholders": ["name", "gift"]}
        r = await c.put("/v1/templates/promo/sms/zh-CN", json=good)
        assert r.status_code == 200
        # "你好，到了" once the placeholders are empty: five UCS-2 units, one SMS
        assert r.json()["sms"] == {"encoding": "UCS-2", "units": 5, "segments": 1}
        r = await c.put("/v1/templates/promo/sms/zh-CN", json=good, headers={
            "Authorization": f"Bearer {capped.keys.viewer}"})  # fmt: skip
        assert r.status_code == 403


async def test_broadcast_needs_another_principal_and_is_fanned_out_paced(
    capped: Deployment,
) -> None:
    k = capped.keys
    users = [f"bc-{i:02d}" for i in range(20)]
    async with capped.client(k.admin) as admin:
        body = {"daily_cap": 3, "marketing": True, **ALWAYS_OPEN}
        assert (await admin.put("/v1/policies/marketing", json=body)).status_code == 200
        template = {"category": "marketing", "text": "{name}，周末双倍积分！回TD退订",
                    "placeholders": ["name"]}  # fmt: skip
        assert (await admin.put("/v1/templates/weekend/im/zh-CN", json=template)).status_code == 200
        assert (await admin.put(f"/v1/users/{users[0]}/opt-out")).status_code == 204
    broadcast = {"name": "weekend", "template": "weekend", "category": "marketing",
                 "params": {"name": "亲爱的用户"}, "rate_per_s": 20,
                 "segment": {"kind": "list", "user_ids": users}}  # fmt: skip
    async with capped.client(k.owner_approver) as lead, capped.client(k.approver) as approver:
        r = await lead.post("/v1/broadcasts", json={**broadcast, "params": {}})
        assert r.status_code == 422 and "missing placeholder 'name'" in r.json()["detail"]
        r = await lead.post("/v1/broadcasts", json=broadcast)
        assert r.status_code == 201 and r.json()["status"] == "pending_approval"
        bid = r.json()["broadcast_id"]
        r = await lead.post(f"/v1/broadcasts/{bid}:approve")
        assert r.status_code == 403 and r.json()["code"] == "self_approval"
        r = await approver.post(f"/v1/broadcasts/{bid}:approve")
        assert r.status_code == 200 and r.json()["recipients"] == 20
        counts = await capped.settled(20, f"broadcast:{bid}")
        assert counts == {"delivered": 19, "suppressed": 1}
        pages = [(await lead.get(f"/v1/users/{u}/notifications")).json() for u in users]
    due = sorted(datetime.fromisoformat(p["items"][-1]["not_before"]) for p in pages)
    gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(due)}
    assert gaps == {0.05}  # 20 per second, not a burst


async def test_broadcast_segments_resolve_through_scoring(
    stack: Stack, keys: Keys, ingest: ServiceProcess
) -> None:
    scoring = stack.start_service(
        "scoring", instance="-seg",
        env={"SCORING_SCHEMA_NAME": "scoring_seg", "SCORING_CONSUMER_GROUP": "scoring_seg"},
    )  # fmt: skip
    d = Deployment(stack, keys, "notify_seg", replicas=1, NOTIFY_SCORING_URL=scoring.url,
                   NOTIFY_SCORING_KEY=keys.viewer)  # fmt: skip
    await d.ready()
    now = datetime.now(UTC)
    month = now.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    events = [
        make_event("group_created", user_id="seg-owner", group_id="seg-g1", name="g",
                   province="MO", at=now - timedelta(minutes=3)),
        *[make_event("group_join", user_id=u, group_id="seg-g1", at=now - timedelta(minutes=2))
          for u in ("seg-busy", "seg-quiet")],
        *[make_event("message", user_id="seg-busy", client="pc", at=now - timedelta(minutes=1))
          for _ in range(25)],
        make_event("message", user_id="seg-quiet", client="pc", at=now - timedelta(minutes=1)),
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as c:
        r = await c.post("/v1/events", json={"events": events},
                         headers={"Authorization": f"Bearer {keys.platform}"})  # fmt: skip
        assert r.status_code == 202 and r.json()["accepted"] == len(events)
    deadline = asyncio.get_running_loop().time() + 60
    async with httpx.AsyncClient(
        base_url=scoring.url, headers={"Authorization": f"Bearer {keys.viewer}"}, timeout=30
    ) as c:
        while (await c.get(f"/v1/groups/seg-g1/months/{month}")).json().get("members") != 3:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
    async with d.client() as admin:
        body = {"daily_cap": 3, "marketing": False, **ALWAYS_OPEN}
        assert (await admin.put("/v1/policies/service", json=body)).status_code == 200
        template = {"category": "service", "text": "群活动通知", "placeholders": []}
        assert (await admin.put("/v1/templates/notice/im/zh-CN", json=template)).status_code == 200
    ids = {}
    async with d.client(keys.owner) as owner, d.client(keys.approver) as approver:
        for name, segment in (
            ("top", {"kind": "top_groups", "month": month, "province": "MO", "top": 1}),
            ("busy", {"kind": "active_users", "month": month, "min_activity_points": 20}),
        ):
            body = {"name": name, "template": "notice", "category": "service", "segment": segment}
            r = await owner.post("/v1/broadcasts", json=body)
            assert r.status_code == 201, r.text
            r = await approver.post(f"/v1/broadcasts/{r.json()['broadcast_id']}:approve")
            assert r.status_code == 200, r.text
            ids[name] = r.json()["broadcast_id"]
    top = await d.settled(3, f"broadcast:{ids['top']}")
    assert top == {"delivered": 3}
    for user in ("seg-owner", "seg-busy", "seg-quiet"):
        assert await d.sandbox(user), user
    async with d.client() as c:
        busy = (await c.get(f"/v1/broadcasts/{ids['busy']}")).json()
        quiet = (await c.get("/v1/users/seg-quiet/notifications")).json()["items"]
    assert busy["recipients"] >= 1
    assert all(n["source"] != f"broadcast:{ids['busy']}" for n in quiet)  # 1 point: not in it
