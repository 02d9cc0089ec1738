"""How far a consumer service has got, read from its own ledger (for the demo, tests, benches)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from shared.kafka import end_offsets


async def processed_events(database_url: str, schema: str = "scoring") -> int:
    """Distinct events in the service's processed-event ledger (0 before it has migrated)."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".processed_events') or 0)
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return 0
    finally:
        await conn.close()


async def wait_processed(
    database_url: str, target: int, schema: str = "scoring", timeout_s: float = 300.0
) -> float:
    """Wait until `target` distinct events are in the ledger; return the seconds it took."""
    start = time.monotonic()
    while (n := await processed_events(database_url, schema)) < target:
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{schema}: {n:,} of {target:,} events after {timeout_s:.0f}s")
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def count_rows(database_url: str, sql: str) -> int | None:
    """A `SELECT count(*)`'s answer; None while the service has not created the table."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        return int(await conn.fetchval(sql) or 0)
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return None
    finally:
        await conn.close()


async def wait_outbox_empty(
    database_url: str, schema: str, table: str, timeout_s: float = 300.0
) -> None:
    """Wait until a service's outbox has published everything (the table exists and is empty)."""
    deadline = time.monotonic() + timeout_s
    while (n := await count_rows(database_url, f'SELECT count(*) FROM "{schema}".{table}')) != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{schema}.{table}: {n} rows still waiting after {timeout_s:.0f}s")
        await asyncio.sleep(0.2)


async def wait_notices_ended(database_url: str, timeout_s: float = 300.0) -> None:
    """Wait until notify has no message queued, deferred or being sent — except those deferred
    to the user's next local day by the daily cap (SPEC §11): they wait, by design, until then."""
    deadline = time.monotonic() + timeout_s
    sql = (
        "SELECT count(*) FROM notify.notifications WHERE status IN ('queued', 'sending') "
        "OR (status = 'deferred' AND reason IS DISTINCT FROM 'daily_cap')"
    )
    while (n := await count_rows(database_url, sql)) != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"notify: {n} messages still pending after {timeout_s:.0f}s")
        await asyncio.sleep(0.2)


async def topic_ends(bootstrap: str, topic: str) -> dict[int, int]:
    return await end_offsets(bootstrap, topic)


async def stored_offsets(database_url: str, schema: str, topic: str) -> dict[int, int]:
    """A service's committed position per partition of `topic` (empty before it migrated)."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            f'SELECT partition, next_offset FROM "{schema}".consumer_offsets WHERE topic = $1',
            topic,
        )
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        rows = []
    finally:
        await conn.close()
    return {int(r["partition"]): int(r["next_offset"]) for r in rows}


async def wait_consumed(
    database_url: str, bootstrap: str, schema: str, topic: str, timeout_s: float = 300.0
) -> None:
    """Wait until a service's stored offsets reach what `topic` holds now."""
    ends = await topic_ends(bootstrap, topic)
    deadline = time.monotonic() + timeout_s
    while True:
        stored = await stored_offsets(database_url, schema, topic)
        behind = {p: e - stored.get(p, 0) for p, e in ends.items() if stored.get(p, 0) < e}
        if not behind:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{schema}: behind on {topic} by {behind} after {timeout_s:.0f}s")
        await asyncio.sleep(0.2)


async def wait_keys_known(
    base_url: str, path: str, secrets: list[str], timeout_s: float = 30.0
) -> None:
    """Wait until a service knows these API keys (they travel to it on engage.keys.v1)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for secret in secrets:
            while (
                await client.get(path, headers={"Authorization": f"Bearer {secret}"})
            ).status_code == 401:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{base_url}: a key is still unknown after {timeout_s}s")
                await asyncio.sleep(0.1)
