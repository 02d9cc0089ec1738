"""SMS through SMPP 3.4 against a real SMSC simulator on loopback (smpp34's server): submit and
message id, delivery receipts (also late and failed), throttling, connection loss and re-bind,
and the "TD" reply that unsubscribes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engage.smsc import SmscSimulator
from engage.stack import Stack
from tests.integration.conftest import Keys
from tests.integration.notify_support import Deployment, publish

pytestmark = pytest.mark.asyncio
REQUESTS = "engage.notify.v1"


def request(request_id: str, user_id: str, campaign: str = "新春活动") -> dict[str, Any]:
    return {
        "request_id": request_id, "user_id": user_id, "template": "reward_granted",
        "category": "reward", "channel": "sms",
        "params": {"campaign": campaign, "rewards": "20条短信", "fulfil_by": "2026-12-10"},
    }  # fmt: skip


@pytest.fixture(scope="module")
async def smsc() -> AsyncIterator[SmscSimulator]:
    sim = await SmscSimulator(receipt_delay_s=0.3, undeliverable={"sms-bad"}).start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture(scope="module")
async def notify(stack: Stack, keys: Keys, smsc: SmscSimulator) -> Deployment:
    d = Deployment(
        stack, keys, "notify_smpp", replicas=1,
        NOTIFY_SMPP_HOST="127.0.0.1", NOTIFY_SMPP_PORT=str(smsc.port),
    )  # fmt: skip
    await d.ready(daily_cap=100)
    return d


async def send(notify: Deployment, docs: list[dict[str, Any]], prefix: str) -> dict[str, int]:
    bootstrap = notify.stack.kafka_bootstrap
    assert bootstrap
    await publish(bootstrap, docs, REQUESTS)
    # "sent" is not an end state here: its receipt is still to come
    return await notify.settled(
        len(docs), prefix, timeout_s=60, pending=("queued", "deferred", "sending", "sent")
    )


async def statuses(notify: Deployment, user: str) -> list[dict[str, Any]]:
    async with notify.client() as c:
        items: list[dict[str, Any]] = (await c.get(f"/v1/users/{user}/notifications")).json()[
            "items"
        ]
        return items


async def wait_until(predicate: Any, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def test_submit_gets_a_message_id_and_the_receipt_delivers_it(
    notify: Deployment, smsc: SmscSimulator
) -> None:
    counts = await send(notify, [request("a-1", "sms-good")], "request:a-")
    assert counts == {"delivered": 1}
    (n,) = await statuses(notify, "sms-good")
    submitted = next(s for s in smsc.submitted if s.destination == "sms-good")
    assert (n["provider"], n["provider_message_id"]) == ("smpp", submitted.message_id)
    assert "新春活动" in submitted.text and submitted.text == n["body"]  # UCS-2 both ways


async def test_a_failed_receipt_fails_the_message(notify: Deployment) -> None:
    counts = await send(notify, [request("b-1", "sms-bad")], "request:b-")
    assert counts == {"failed": 1}
    (n,) = await statuses(notify, "sms-bad")
    assert n["reason"] == "receipt: UNDELIV"


async def test_throttling_slows_the_sender_and_loses_nothing(
    notify: Deployment, smsc: SmscSimulator
) -> None:
    smsc.throttled, smsc.throttle_first = 0, 3
    counts = await send(notify, [request(f"c-{i}", f"sms-t{i}") for i in range(5)], "request:c-")
    assert counts == {"delivered": 5}
    assert smsc.throttled == 3
    attempts = [n["attempts"] for i in range(5) for n in await statuses(notify, f"sms-t{i}")]
    assert sum(attempts) == 5 + 3  # three sends were refused once, then went through


async def test_connection_loss_re_binds_and_sends_the_rest(
    notify: Deployment, smsc: SmscSimulator
) -> None:
    sessions = smsc.sessions_seen
    await smsc.drop_sessions()

    async def rebound() -> bool:
        return smsc.sessions_seen > sessions and smsc.bound() > 0

    await wait_until(rebound)
    counts = await send(notify, [request(f"d-{i}", f"sms-d{i}") for i in range(10)], "request:d-")
    assert counts == {"delivered": 10}


async def test_td_reply_unsubscribes_the_user(notify: Deployment, smsc: SmscSimulator) -> None:
    await smsc.reply("sms-leaver", "TD")

    async def opted_out() -> bool:
        async with notify.client() as c:
            page = (await c.get("/v1/users/sms-leaver/notifications")).json()
            return bool(page["opted_out"])

    await wait_until(opted_out)
