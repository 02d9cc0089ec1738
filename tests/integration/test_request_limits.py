"""No request can exhaust a service (issue 18): each caller's requests are rate-limited on the
read and admin APIs (429 problem+json with Retry-After), and no statement of a request runs
longer than the service allows (the database cancels it: 503 problem+json, never a 500)."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from engage.progress import wait_keys_known
from engage.stack import Stack
from tests.integration.conftest import Keys

pytestmark = pytest.mark.asyncio
PROBLEM = "application/problem+json"


async def test_a_callers_requests_beyond_its_rate_get_429_and_others_are_served(
    stack: Stack, keys: Keys
) -> None:
    scoring = stack.start_service(
        "scoring",
        instance="-limited",
        env={"SCORING_CONSUME": "false", "ENGAGE_API_REQUESTS_PER_S": "1"},
    )
    try:
        await wait_keys_known(scoring.url, "/v1/profiles", [keys.viewer, keys.admin])
        async with httpx.AsyncClient(base_url=scoring.url, timeout=30) as c:
            viewer = {"Authorization": f"Bearer {keys.viewer}"}
            answers = await asyncio.gather(
                *(c.get("/v1/profiles", headers=viewer) for _ in range(260))
            )
            codes = [r.status_code for r in answers]
            assert codes.count(200) >= 190 and codes.count(429) >= 50, codes
            limited = next(r for r in answers if r.status_code == 429)
            assert limited.headers["content-type"] == PROBLEM
            assert limited.json()["code"] == "rate_limited"
            assert int(limited.headers["retry-after"]) >= 1
            # Another caller has a bucket of its own.
            r = await c.get("/v1/profiles", headers={"Authorization": f"Bearer {keys.admin}"})
            assert r.status_code == 200
    finally:
        scoring.stop()


async def test_a_statement_over_the_timeout_is_cancelled_and_answered_503(
    stack: Stack, keys: Keys
) -> None:
    """A request stuck behind a lock (as behind any slow plan) is cancelled by the database at
    the timeout; the connection is free again and the caller gets a 503 that says why."""
    assert stack.database_url
    scoring = stack.start_service(
        "scoring",
        instance="-timeout",
        env={"SCORING_CONSUME": "false", "ENGAGE_API_STATEMENT_TIMEOUT_S": "0.5"},
    )
    locker = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""))
    try:
        await wait_keys_known(scoring.url, "/v1/profiles", [keys.viewer])
        headers = {"Authorization": f"Bearer {keys.viewer}"}
        async with httpx.AsyncClient(base_url=scoring.url, timeout=30) as c:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE scoring.weight_profiles IN ACCESS EXCLUSIVE MODE")
            r = await c.get("/v1/profiles", headers=headers)
            await tx.rollback()
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == PROBLEM and r.headers["retry-after"]
            body = r.json()
            assert body["code"] == "statement_timeout" and "ran longer than 0.5 s" in body["detail"]
            # Nothing stays stuck: the same read answers once the lock is gone.
            assert (await c.get("/v1/profiles", headers=headers)).status_code == 200
    finally:
        await locker.close()
        scoring.stop()


async def test_a_body_that_drips_is_cut_off_with_408(stack: Stack, keys: Keys) -> None:
    """A client that sends its headers and then drips (or stalls) its body holds the
    connection only until the body read timeout: then a 408 problem and the connection closed."""
    notify = stack.start_service(
        "notify",
        instance="-drip",
        env={
            "NOTIFY_SCHEMA_NAME": "notify_drip",
            "NOTIFY_CONSUME": "false",
            "ENGAGE_BODY_READ_TIMEOUT_S": "1",
        },
    )
    try:
        await wait_keys_known(notify.url, "/v1/policies", [keys.owner])
        reader, writer = await asyncio.open_connection("127.0.0.1", notify.port)
        head = (
            "POST /v1/broadcasts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {keys.owner}\r\nContent-Length: 1000\r\n\r\n"
        )
        writer.write(head.encode() + b'{"name": "dri')
        await writer.drain()
        # The client never sends the rest: only the server's timeout can end this read.
        answer = await asyncio.wait_for(reader.read(), timeout=20)
        writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b"application/problem+json" in rest and b"request_timeout" in rest
    finally:
        notify.stop()


async def _drip_head(port: int, first: bytes = b"") -> bytes:
    """Send `first` (whole requests), then a request head one byte at a time, never ending it,
    until the server closes the connection; what the server answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def drip() -> None:
        writer.write(first)
        for byte in b"GET /v1/profiles HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    dripping = asyncio.create_task(drip())
    try:
        # Data keeps arriving: only a deadline that data does not extend can end this read.
        return await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        writer.close()


async def test_a_head_that_drips_is_cut_off_with_408(stack: Stack, keys: Keys) -> None:
    """A client that drips its request head (slowloris) holds the connection only until the
    head deadline (ENGAGE_HEADER_READ_TIMEOUT_S), on a new connection and on a kept-alive one;
    a request whose head arrived is answered as usual; an idle connection is closed silently."""
    scoring = stack.start_service(
        "scoring",
        instance="-slowhead",
        env={"SCORING_CONSUME": "false", "ENGAGE_HEADER_READ_TIMEOUT_S": "1"},
    )
    try:
        await wait_keys_known(scoring.url, "/v1/profiles", [keys.viewer])
        answer = await _drip_head(scoring.port)
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 408 Request Timeout", answer[:300]
        assert b"application/problem+json" in rest and b"request_timeout" in rest

        whole = (
            f"GET /v1/profiles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keys.viewer}\r\n\r\n"
        ).encode()
        answer = await _drip_head(scoring.port, first=whole)
        responses = answer.split(b"HTTP/1.1 ")[1:]
        assert [r[:3] for r in responses] == [b"200", b"408"], answer[:500]

        # An idle connection (no byte of a request) is closed without an unasked answer.
        reader, writer = await asyncio.open_connection("127.0.0.1", scoring.port)
        assert await asyncio.wait_for(reader.read(), timeout=30) == b""
        writer.close()
    finally:
        scoring.stop()
