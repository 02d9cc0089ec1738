"""Approving a broadcast against a real PostgreSQL (SPEC §6, STYLE: no HTTP call inside a
transaction): the segment is resolved through scoring before the approving transaction opens,
so a slow scoring holds no database transaction (and no locks) while notify waits for it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import asyncpg
import orjson
import pytest

from engage.stack import Stack
from tests.integration.conftest import Keys
from tests.integration.notify_support import ALWAYS_OPEN, Deployment

pytestmark = pytest.mark.asyncio

SCHEMA = "notify_slowseg"
SEGMENT_USERS = ["slow-1", "slow-2", "slow-3"]


class _SlowScoring(BaseHTTPRequestHandler):
    """Scoring's active-users list that answers only when the test lets it."""

    asked: ClassVar[threading.Event] = threading.Event()
    answer: ClassVar[threading.Event] = threading.Event()

    def do_GET(self) -> None:
        self.asked.set()
        self.answer.wait(timeout=60)
        body = orjson.dumps({"items": [{"user_id": u} for u in SEGMENT_USERS], "next_cursor": None})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def slow_scoring() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowScoring)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _SlowScoring.answer.set()
        server.shutdown()


async def _notify_transactions(database_url: str) -> list[str]:
    """States of notify's connections that are inside a transaction right now."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            "SELECT state FROM pg_stat_activity WHERE application_name = $1 "
            "AND state LIKE 'idle in transaction%'",
            SCHEMA,
        )
        return [r["state"] for r in rows]
    finally:
        await conn.close()


async def test_approving_while_scoring_is_slow_holds_no_database_transaction(
    stack: Stack, keys: Keys, slow_scoring: str
) -> None:
    assert stack.database_url
    # Nothing else of notify touches the database meanwhile: no consumers, no dispatcher.
    d = Deployment(
        stack, keys, SCHEMA, replicas=1, NOTIFY_CONSUME="false",
        NOTIFY_SCORING_URL=slow_scoring, NOTIFY_SCORING_KEY="unused",
    )  # fmt: skip
    await d.ready()
    async with d.client() as admin:
        body = {"daily_cap": 3, "marketing": False, **ALWAYS_OPEN}
        assert (await admin.put("/v1/policies/service", json=body)).status_code == 200
        template = {"category": "service", "text": "活动通知", "placeholders": []}
        assert (await admin.put("/v1/templates/slow/im/zh-CN", json=template)).status_code == 200
    segment = {"kind": "active_users", "month": "2026-11", "min_activity_points": 1}
    async with d.client(keys.owner) as owner, d.client(keys.approver) as approver:
        body = {"name": "slow", "template": "slow", "category": "service", "segment": segment}
        r = await owner.post("/v1/broadcasts", json=body)
        assert r.status_code == 201, r.text
        bid = r.json()["broadcast_id"]

        approving = asyncio.create_task(approver.post(f"/v1/broadcasts/{bid}:approve"))
        assert await asyncio.to_thread(_SlowScoring.asked.wait, 30), "scoring was never asked"
        held = await _notify_transactions(stack.database_url)
        _SlowScoring.answer.set()
        r = await approving

    assert held == []  # while scoring answered slowly, notify held no transaction open
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["recipients"]) == ("approved", len(SEGMENT_USERS))
    async with d.client(keys.viewer) as viewer:
        queued = (await viewer.get("/v1/users/slow-1/notifications")).json()["items"]
    assert [n["source"] for n in queued] == [f"broadcast:{bid}"]
