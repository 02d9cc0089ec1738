"""Helpers for the notify integration tests: grant events on the topic, deployments of notify
replicas in a schema of their own, waiting for their messages to end."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from engage.progress import wait_keys_known
from engage.stack import ServiceProcess, Stack
from tests.integration.conftest import Keys

GRANTS = "engage.grants.v1"
REQUESTS = "engage.notify.v1"
# Waiting for today: what a test waits on. `deferred` may last until the user's next local day
# (reward notices over the daily cap, SPEC §11), so a test cannot wait for it to end.
WAITING_TODAY = ("queued", "sending")
ALWAYS_OPEN = {"window_start": "00:00", "window_end": "00:00", "ttl_seconds": 86400}


CREDIT_AND_SMS = [{"kind": "credit_fen", "amount": 200}, {"kind": "sms", "amount": 20}]


def grant(grant_id: int, user_id: str, status: str = "granted", **overrides: Any) -> dict[str, Any]:
    return {
        "event": "recorded", "grant_id": grant_id, "campaign_id": "cmp_000000000001",
        "campaign_name": "Play and get gifts", "version": 1, "rule_id": "r", "role": "user",
        "user_id": user_id, "period": "campaign", "status": status, "items": CREDIT_AND_SMS,
        "fulfil_by": "2026-12-10", **overrides,
    }  # fmt: skip


def send_request(request_id: str, user_id: str, **overrides: Any) -> dict[str, Any]:
    return {"request_id": request_id, "user_id": user_id, "template": "promo",
            "category": "marketing", "params": {}, **overrides}  # fmt: skip


async def publish(bootstrap: str, docs: list[dict[str, Any]], topic: str = GRANTS) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for doc in docs:
            await producer.send(topic, orjson.dumps(doc), key=doc["user_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


class Deployment:
    """Notify replicas sharing one schema."""

    def __init__(self, stack: Stack, keys: Keys, schema: str, replicas: int, **env: str) -> None:
        self.stack, self.keys, self.schema = stack, keys, schema
        base = {"NOTIFY_SCHEMA_NAME": schema, "NOTIFY_CONSUMER_GROUP": schema,
                "NOTIFY_RETRY_BASE_S": "0.05", **env}  # fmt: skip
        self.replicas: list[ServiceProcess] = [
            stack.start_service("notify", instance=f"-{schema}-{i}", env=base)
            for i in range(replicas)
        ]

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.replicas[0].url,
            headers={"Authorization": f"Bearer {key or self.keys.admin}"},
            timeout=30,
        )

    async def ready(self, **policy: Any) -> None:
        for r in self.replicas:
            await wait_keys_known(r.url, "/v1/policies", [self.keys.admin, self.keys.viewer])
        async with self.client() as c:
            body = {"daily_cap": 3, "marketing": False, **ALWAYS_OPEN, **policy}
            assert (await c.put("/v1/policies/reward", json=body)).status_code == 200

    async def counts(self, prefix: str = "grant:") -> dict[str, int]:
        async with self.client() as c:
            r = await c.get("/v1/notifications/counts", params={"source_prefix": prefix})
            counts: dict[str, int] = r.json()["counts"]
            return counts

    async def settled(
        self,
        total: int,
        prefix: str = "grant:",
        timeout_s: float = 60,
        pending: tuple[str, ...] = ("queued", "deferred", "sending"),
    ) -> dict[str, int]:
        """Wait until the notifications of sources with this prefix have all ended.

        Every deployment reads the grants topic from the start, so each test uses grant ids
        with a prefix of its own."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            counts = await self.counts(prefix)
            waiting = sum(counts.get(s, 0) for s in pending)
            if sum(counts.values()) == total and waiting == 0:
                return counts
            assert asyncio.get_running_loop().time() < deadline, counts
            await asyncio.sleep(0.1)

    async def notifications(self, user_id: str) -> list[dict[str, Any]]:
        async with self.client() as c:
            r = await c.get(f"/v1/users/{user_id}/notifications", params={"limit": 500})
            items: list[dict[str, Any]] = r.json()["items"]
            return items

    async def sandbox(self, user_id: str) -> list[dict[str, Any]]:
        async with self.client() as c:
            r = await c.get("/v1/sandbox/messages", params={"user_id": user_id, "limit": 500})
            items: list[dict[str, Any]] = r.json()["items"]
            return items
