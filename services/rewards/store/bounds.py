"""Bounds of long reads (SPEC §15): a statement timeout for the transaction, and a cheap
estimate of how many users have stored days (a simulation's size, refused up front)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def bound_statements(session: AsyncSession, seconds: float) -> None:
    """No statement of the session's transaction runs longer than `seconds`."""
    await session.execute(text(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}"))


async def users_with_days(session: AsyncSession, cap: int) -> int:
    """About how many users have stored days: the planner's statistics of `user_day` (its row
    estimate × the distinct share of user ids), read in microseconds; before the table was ever
    analysed, a count of distinct users that stops at `cap` (index order, so it reads at most
    `cap` users' keys)."""
    row = (
        await session.execute(
            text(
                "SELECT c.reltuples, s.n_distinct FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema() "
                "LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname "
                "AND s.attname = 'user_id' WHERE c.relname = 'user_day'"
            )
        )
    ).first()
    if row is not None and row.n_distinct is not None and (row.reltuples or -1) >= 0:
        n = float(row.n_distinct)
        return int(n if n > 0 else -n * float(row.reltuples))
    found = await session.execute(
        text("SELECT count(*) FROM (SELECT DISTINCT user_id FROM user_day LIMIT :cap) u"),
        {"cap": max(1, cap)},
    )
    return int(found.scalar_one())


async def search_path(session: AsyncSession) -> str:
    """The connection's search path (the service's schema): for an engine of its own."""
    return str((await session.execute(text("SELECT current_setting('search_path')"))).scalar_one())
