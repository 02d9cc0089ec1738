"""Every winner is told (SPEC §11) against a real broker and PostgreSQL: reward notices waiting
for a user go out as one digest taking one cap slot; what does not fit waits for the user's next
local day, never suppressed; a replayed grant is listed once; marketing is still suppressed by
the cap; a notice sent after its fulfil-by day does not promise that day."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engage.progress import wait_consumed
from engage.stack import Stack
from tests.integration.conftest import Keys, issue_keys, own_stack
from tests.integration.notify_support import (
    ALWAYS_OPEN,
    GRANTS,
    REQUESTS,
    WAITING_TODAY,
    Deployment,
    grant,
    publish,
    send_request,
)

pytestmark = pytest.mark.asyncio
TZ = ZoneInfo("Asia/Shanghai")  # the stack's ENGAGE_TZ default


# A stack of its own: these grants must not reach other tests' notify deployments, which read
# the grants topic from the start (and count what they find).
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from own_stack(tmp_path_factory, "digests")


@pytest.fixture(scope="module")
async def keys(stack: Stack) -> Keys:
    return await issue_keys(stack)


@pytest.fixture(scope="module")
async def single(stack: Stack, keys: Keys) -> Deployment:
    """One replica that gathers reward notices for 3 s before composing."""
    d = Deployment(stack, keys, "notify_digest1", replicas=1, NOTIFY_DIGEST_GATHER_S="3")
    await d.ready()
    return d


@pytest.fixture(scope="module")
async def replicas(stack: Stack, keys: Keys) -> Deployment:
    d = Deployment(stack, keys, "notify_digest2", replicas=2, NOTIFY_DIGEST_GATHER_S="0.3")
    await d.ready(daily_cap=3)
    return d


def messages_of(items: list[dict[str, Any]]) -> Counter[int]:
    """Delivered notifications per message they went out in (a digest's, or their own)."""
    return Counter(n["digest_id"] or n["id"] for n in items if n["status"] == "delivered")


async def test_ten_grants_in_a_day_go_out_as_one_digest_listing_all_ten(
    single: Deployment,
) -> None:
    url, bootstrap = single.stack.database_url, single.stack.kafka_bootstrap
    assert url and bootstrap
    docs = [grant(62000 + i, "digest-ten", campaign_name=f"活动{i}") for i in range(10)]
    await publish(bootstrap, docs)
    assert await single.settled(10, "grant:620") == {"delivered": 10}
    (message,) = await single.sandbox("digest-ten")
    assert message["body"].startswith("恭喜！您获得10项奖励：「活动")
    for i in range(10):
        assert f"「活动{i}」2元话费、20条短信，将于2026-12-10前到账" in message["body"]
    items = await single.notifications("digest-ten")
    assert {n["digest_id"] for n in items} == {message["notification_id"]}
    assert {n["body"] for n in items} == {message["body"]}
    await publish(bootstrap, docs)  # replayed: nothing more, nothing twice
    await wait_consumed(url, bootstrap, "notify_digest1", GRANTS)
    assert await single.settled(10, "grant:620") == {"delivered": 10}
    assert len(await single.sandbox("digest-ten")) == 1


async def test_a_notice_sent_after_its_fulfil_by_day_does_not_promise_it(
    single: Deployment,
) -> None:
    bootstrap = single.stack.kafka_bootstrap
    assert bootstrap
    await publish(
        bootstrap,
        [
            grant(63000, "late-single", fulfil_by="2026-01-05"),
            grant(63001, "late-digest", fulfil_by="2026-01-05", campaign_name="旧活动"),
            grant(63002, "late-digest", campaign_name="新活动"),
        ],
    )
    await single.settled(3, "grant:630")
    (alone,) = await single.sandbox("late-single")
    assert (
        alone["body"] == "恭喜！您在「Play and get gifts」活动中获得2元话费、20条短信，将尽快到账。"
    )
    (digest,) = await single.sandbox("late-digest")
    assert "「旧活动」2元话费、20条短信，将尽快到账" in digest["body"]
    assert "「新活动」2元话费、20条短信，将于2026-12-10前到账" in digest["body"]
    assert "2026-01-05" not in alone["body"] + digest["body"]


async def test_three_users_five_grants_cap_three_two_replicas_lose_no_reward(
    replicas: Deployment,
) -> None:
    url, bootstrap = replicas.stack.database_url, replicas.stack.kafka_bootstrap
    assert url and bootstrap
    users = ["dg-a", "dg-b", "dg-c"]
    waves = [[grant(61000 + 10 * w + j, u) for j, u in enumerate(users)] for w in range(5)]
    for w, wave in enumerate(waves):  # one grant each per wave: each wave is a message
        await publish(bootstrap, wave)
        await replicas.settled(3 * (w + 1), "grant:61", pending=WAITING_TODAY)
    counts = await replicas.settled(15, "grant:61", pending=WAITING_TODAY)
    assert counts == {"delivered": 9, "deferred": 6}  # none suppressed
    for user in users:
        items = await replicas.notifications(user)
        sent = await replicas.sandbox(user)
        per_day = Counter(n["cap_day"] for n in items if n["status"] == "delivered")
        assert len(sent) == 3 and all(m <= 3 for m in per_day.values())
        assert set(messages_of(items)) == {m["notification_id"] for m in sent}
        waiting = [n for n in items if n["status"] == "deferred"]
        assert len(waiting) == 2 and {n["reason"] for n in waiting} == {"daily_cap"}
        for n in waiting:  # the user's next local day, at its start (the window is always open)
            due = datetime.fromisoformat(n["not_before"]).astimezone(TZ)
            assert (due.date() - datetime.now(TZ).date()).days == 1 and due.time().hour == 0
    await publish(bootstrap, waves[0])  # replayed: listed once
    await wait_consumed(url, bootstrap, "notify_digest2", GRANTS)
    assert await replicas.settled(15, "grant:61", pending=WAITING_TODAY) == counts
    assert sum([len(await replicas.sandbox(u)) for u in users]) == 9


async def test_marketing_over_the_cap_is_still_suppressed(replicas: Deployment) -> None:
    bootstrap = replicas.stack.kafka_bootstrap
    assert bootstrap
    async with replicas.client() as admin:
        body = {"daily_cap": 1, "marketing": True, **ALWAYS_OPEN}
        assert (await admin.put("/v1/policies/marketing", json=body)).status_code == 200
        template = {"category": "marketing", "text": "周末特惠", "placeholders": []}
        assert (await admin.put("/v1/templates/promo/im/zh-CN", json=template)).status_code == 200
    await publish(bootstrap, [send_request(f"mk-{i}", "mk-user") for i in range(2)], REQUESTS)
    assert await replicas.settled(2, "request:mk-") == {"delivered": 1, "suppressed": 1}
    items = await replicas.notifications("mk-user")
    assert [n["reason"] for n in items if n["status"] == "suppressed"] == ["daily_cap"]


async def test_broadcast_preview_shows_texts_count_and_sample_and_matches_what_is_queued(
    single: Deployment,
) -> None:
    k = single.keys
    users = [f"pv-{i:02d}" for i in range(25)]
    async with single.client(k.admin) as admin:
        body = {"daily_cap": 3, "marketing": True, **ALWAYS_OPEN}
        assert (await admin.put("/v1/policies/marketing", json=body)).status_code == 200
        for path, text in (
            ("im/zh-CN", "{name}，周末特惠"),
            ("im/en", "{name}, weekend sale"),
            ("sms/zh-CN", "【飞信】{name}，周末特惠。回TD退订"),
        ):
            template = {"category": "marketing", "text": text, "placeholders": ["name"]}
            assert (await admin.put(f"/v1/templates/sale/{path}", json=template)).status_code == 200
    broadcast = {"name": "sale", "template": "sale", "category": "marketing",
                 "params": {"name": "亲"}, "rate_per_s": 100,
                 "segment": {"kind": "list", "user_ids": users}}  # fmt: skip
    async with (
        single.client(k.owner) as owner,
        single.client(k.approver) as approver,
        single.client(k.viewer) as viewer,
    ):
        r = await owner.post("/v1/broadcasts", json=broadcast)
        assert r.status_code == 201 and r.json()["segment"] == {"kind": "list", "user_count": 25}
        bid = r.json()["broadcast_id"]
        r = await approver.get(f"/v1/broadcasts/{bid}/preview")
        assert r.status_code == 200, r.text
        before = r.json()
        assert (before["status"], before["recipients"]) == ("pending_approval", 25)
        assert before["sample"] == users[:20]
        assert [(t["channel"], t["locale"], t["text"]) for t in before["texts"]] == [
            ("im", "en", "亲, weekend sale"),
            ("im", "zh-CN", "亲，周末特惠"),
            ("sms", "zh-CN", "【飞信】亲，周末特惠。回TD退订"),
        ]
        assert before["texts"][2]["sms"] == {"encoding": "UCS-2", "units": 16, "segments": 1}
        assert (await viewer.get(f"/v1/broadcasts/{bid}/preview")).status_code == 200
        r = await approver.post(f"/v1/broadcasts/{bid}:approve")
        assert r.status_code == 200, r.text
        approved = r.json()["approved"]
        assert (approved["recipients"], approved["texts"]) == (25, before["texts"])
        after = (await approver.get(f"/v1/broadcasts/{bid}/preview")).json()
        counts = (await owner.get(f"/v1/broadcasts/{bid}")).json()["counts"]
        assert after["recipients"] == sum(counts.values()) == 25
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
            page = (await viewer.get(f"/v1/broadcasts/{bid}/recipients", params=params)).json()
            seen += page["items"]
            if (cursor := page["next_cursor"]) is None:
                break
        assert [x["user_id"] for x in seen] == users
        assert all(x["notification_id"] for x in seen)
        for path in ("preview", "recipients"):
            r = await viewer.get(f"/v1/broadcasts/999999/{path}")
            assert r.status_code == 404
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_resend_goes_through_the_same_policy_and_the_timeline_shows_it(
    single: Deployment,
) -> None:
    bootstrap = single.stack.kafka_bootstrap
    assert bootstrap
    await publish(bootstrap, [grant(64000, "care-user")])
    assert await single.settled(1, "grant:6400") == {"delivered": 1}
    (original,) = await single.notifications("care-user")
    async with single.client(single.keys.admin) as admin, single.client(single.keys.viewer) as v:
        assert (await v.post(f"/v1/notifications/{original['id']}:resend")).status_code == 403
        r = await admin.post("/v1/notifications/999999999:resend")
        assert r.status_code == 404 and r.json()["code"] == "notification_not_found"
        resent = []
        for n in (1, 2, 3):  # the cap (3) applies: the third resend waits for tomorrow
            r = await admin.post(f"/v1/notifications/{original['id']}:resend")
            assert r.status_code == 201, r.text
            assert r.json()["source"] == f"resend:{original['id']}:{n}"
            assert r.json()["resent_from"] == original["id"]
            resent.append(r.json()["id"])
            await single.settled(n, f"resend:{original['id']}:", pending=WAITING_TODAY)
        assert await single.counts(f"resend:{original['id']}:") == {"delivered": 2, "deferred": 1}
        assert len(await single.sandbox("care-user")) == 3
        r = await v.get("/v1/users/care-user/timeline", params={"limit": 2})
        first = r.json()
        assert r.status_code == 200 and first["user_id"] == "care-user"
        r = await v.get(
            "/v1/users/care-user/timeline", params={"limit": 2, "cursor": first["next_cursor"]}
        )
        timeline = first["items"] + r.json()["items"]
        assert [e["notification_id"] for e in timeline] == [original["id"], *resent]
        assert [(e["status"], e["reason"], e["resent_from"]) for e in timeline] == [
            ("delivered", None, None),
            ("delivered", None, original["id"]),
            ("delivered", None, original["id"]),
            ("deferred", "daily_cap", original["id"]),
        ]
        assert all(e["attempts"] == (1 if e["status"] == "delivered" else 0) for e in timeline)
        ten = (await v.get("/v1/users/digest-ten/timeline")).json()["items"]
        assert len(ten) == 10 and len({e["digest_id"] for e in ten}) == 1
        r = await v.get("/v1/users/nobody-here/timeline")
        assert r.status_code == 404 and r.headers["content-type"].startswith(
            "application/problem+json"
        )
