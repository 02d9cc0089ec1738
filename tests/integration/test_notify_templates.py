"""Template versions under four eyes, against real PostgreSQL and Kafka (SPEC §15, issue 18):
an approved broadcast sends the text its approver saw, whatever the template becomes; a change
to a reward template is pending, and not used, until a second principal approves it; every
version is kept and every step audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import pytest

from engage.stack import Stack
from services.notify.domain.notices import REWARD_TEMPLATE
from shared.auth import key_id_of
from tests.integration.conftest import Keys
from tests.integration.notify_support import ALWAYS_OPEN, Deployment, grant, publish

pytestmark = pytest.mark.asyncio

SCHEMA = "notify_tpl"
APPROVED_TEXT = "Hello {name}, double points this weekend!"
HOSTILE_TEXT = "URGENT {name}: your account is locked, verify at http://evil.example/login"
PROMO = "/v1/templates/rt_promo/im/en"
REWARD = f"/v1/templates/{REWARD_TEMPLATE}/im/zh-CN"


@pytest.fixture(scope="module")
async def tpl(stack: Stack, keys: Keys) -> Deployment:
    d = Deployment(stack, keys, SCHEMA, replicas=1, NOTIFY_DIGEST_GATHER_S="0")
    await d.ready()
    async with d.client() as admin:
        body = {"daily_cap": 50, "marketing": True, **ALWAYS_OPEN}
        assert (await admin.put("/v1/policies/marketing", json=body)).status_code == 200
    return d


def _id(key: str) -> str:
    found = key_id_of(key)
    assert found is not None
    return found


async def _audit(stack: Stack, subject: str) -> list[tuple[str, str]]:
    assert stack.database_url
    conn = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            f"SELECT actor, action FROM {SCHEMA}.audit_log WHERE subject = $1 ORDER BY id",
            subject,
        )
        return [(r["actor"], r["action"]) for r in rows]
    finally:
        await conn.close()


def _promo(text: str) -> dict[str, Any]:
    return {"category": "marketing", "text": text, "placeholders": ["name"]}


async def test_an_approved_broadcast_sends_the_approved_text_after_the_template_changes(
    tpl: Deployment, stack: Stack
) -> None:
    k = tpl.keys
    users = [f"tpl-{i}" for i in range(4)]
    async with tpl.client(k.owner) as owner:
        r = await owner.put(PROMO, json=_promo(APPROVED_TEXT))
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.json()["status"]) == (1, "live")
        body = {"name": "weekend", "template": "rt_promo", "category": "marketing",
                "locale": "en", "params": {"name": "friend"}, "rate_per_s": 1,
                "segment": {"kind": "list", "user_ids": users}}  # fmt: skip
        r = await owner.post("/v1/broadcasts", json=body)
        assert r.status_code == 201, r.text
        bid = r.json()["broadcast_id"]
    async with tpl.client(k.approver) as approver:
        r = await approver.post(f"/v1/broadcasts/{bid}:approve")
        assert r.status_code == 200, r.text
    approved = r.json()["approved"]["texts"]
    assert approved == [{"channel": "im", "locale": "en", "sms": None, "template_version": 1,
                         "text": "Hello friend, double points this weekend!"}]  # fmt: skip

    # Another owner changes the template while the broadcast is still sending (1 per second).
    async with tpl.client(k.owner_approver) as other, tpl.client(k.approver) as approver:
        r = await other.put(PROMO, json=_promo(HOSTILE_TEXT))
        assert r.status_code == 202, r.text  # in use: pending, not live
        change = r.json()
        assert (change["version"], change["status"]) == (2, "pending")
        assert change["review"] == f"in use by broadcast {bid}"
        r = await other.post(f"{PROMO}/versions/2:approve")
        assert r.status_code == 403 and r.json()["code"] == "self_approval", r.text
        live = (await other.get(PROMO)).json()
        assert (live["version"], live["text"], live["pending_version"]) == (1, APPROVED_TEXT, 2)
        # Even once a second principal lets it go live, the broadcast keeps what was approved.
        r = await approver.post(f"{PROMO}/versions/2:approve")
        assert r.status_code == 200 and r.json()["status"] == "live", r.text
        assert r.json()["decided_by"] == _id(k.approver)
        changed_at = datetime.fromisoformat(r.json()["decided_at"])
        preview = (await approver.get(f"/v1/broadcasts/{bid}/preview")).json()
        assert preview["texts"] == approved

    assert await tpl.settled(len(users), f"broadcast:{bid}") == {"delivered": len(users)}
    sent = [m for u in users for m in await tpl.sandbox(u)]
    assert {m["body"] for m in sent} == {"Hello friend, double points this weekend!"}
    assert any(datetime.fromisoformat(m["at"]) > changed_at for m in sent)  # sent after it

    # Finished, the template is in use no more: a change goes live at once again.
    async with tpl.client(k.owner) as owner:
        r = await owner.put(PROMO, json=_promo("Hi {name}, see you next weekend"))
        assert (r.status_code, r.json()["version"], r.json()["status"]) == (200, 3, "live")
        page = (await owner.get(f"{PROMO}/versions", params={"limit": 2})).json()
        rest = (await owner.get(f"{PROMO}/versions", params={"cursor": page["next_cursor"]})).json()
    history = [(v["version"], v["status"], v["authored_by"]) for v in page["items"] + rest["items"]]
    assert history == [
        (3, "live", _id(k.owner)),
        (2, "superseded", _id(k.owner_approver)),
        (1, "superseded", _id(k.owner)),
    ]
    assert rest["next_cursor"] is None
    assert await _audit(stack, "template:rt_promo/im/en") == [
        (_id(k.owner), "template.save"),
        (_id(k.owner_approver), "template.propose"),
        (_id(k.approver), "template.approve"),
        (_id(k.owner), "template.save"),
    ]


async def test_a_reward_template_change_is_pending_until_a_second_principal_approves(
    tpl: Deployment, stack: Stack
) -> None:
    k = tpl.keys
    bootstrap = stack.kafka_bootstrap
    assert bootstrap
    new = {"category": "reward", "text": "NEW: {campaign} gives you {rewards}",
           "placeholders": ["campaign", "rewards"]}  # fmt: skip
    async with tpl.client(k.owner_approver) as lead:
        r = await lead.put(REWARD, json=new)
        assert r.status_code == 202, r.text
        assert (r.json()["status"], r.json()["review"]) == (
            "pending", "reward template: reaches every winner")  # fmt: skip
        pending = r.json()["version"]
        r = await lead.post(f"{REWARD}/versions/{pending}:approve")
        assert r.status_code == 403 and r.json()["code"] == "self_approval", r.text
        r = await lead.post(f"{REWARD}/versions/{pending}:reject")
        assert r.status_code == 403 and r.json()["code"] == "self_approval", r.text

    # Not live: a grant's notice still renders the approved version.
    await publish(bootstrap, [grant(981001, "tpl-winner-1")])
    assert await tpl.settled(1, "grant:981001") == {"delivered": 1}
    (before,) = await tpl.sandbox("tpl-winner-1")
    assert before["body"].startswith("恭喜") and "NEW" not in before["body"]

    async with tpl.client(k.approver) as approver:
        r = await approver.post(f"{REWARD}/versions/{pending}:approve")
        assert r.status_code == 200 and r.json()["status"] == "live", r.text
        r = await approver.post(f"{REWARD}/versions/{pending}:approve")
        assert r.status_code == 409 and r.json()["code"] == "invalid_transition", r.text
    await publish(bootstrap, [grant(981002, "tpl-winner-2")])
    assert await tpl.settled(1, "grant:981002") == {"delivered": 1}
    (after,) = await tpl.sandbox("tpl-winner-2")
    assert after["body"].startswith("NEW: Play and get gifts gives you")

    # An owner's change is rejected by an approver: the live version stays.
    async with tpl.client(k.owner) as owner, tpl.client(k.approver) as approver:
        r = await owner.put(REWARD, json={**new, "text": "URGENT: verify at http://evil.example"
                                          " to get {rewards} from {campaign}"})  # fmt: skip
        assert r.status_code == 202, r.text
        rejected = r.json()["version"]
        r = await approver.post(f"{REWARD}/versions/{rejected}:reject")
        assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
        live = (await owner.get(REWARD)).json()
        history = (await owner.get(f"{REWARD}/versions")).json()["items"]
    assert (live["version"], live["approved_by"], live["pending_version"]) == (
        pending, _id(k.approver), None)  # fmt: skip
    assert [(v["version"], v["status"]) for v in history] == [
        (rejected, "rejected"), (pending, "live"), (1, "superseded")]  # fmt: skip
    assert await _audit(stack, f"template:{REWARD_TEMPLATE}/im/zh-CN") == [
        (_id(k.owner_approver), "template.propose"),
        (_id(k.approver), "template.approve"),
        (_id(k.owner), "template.propose"),
        (_id(k.approver), "template.reject"),
    ]
