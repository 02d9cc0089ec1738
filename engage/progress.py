"""How far a consumer service has got, read from its own ledger (for the demo, tests, benches)."""

from __future__ import annotations

import asyncio
import time

import asyncpg


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
