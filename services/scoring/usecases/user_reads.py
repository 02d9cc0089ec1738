"""Read a user's metrics for the API and for care (SPEC §4, §9, §11): a day, a month, and the
timeline of days; a user scoring never applied an event of is a 404, a known user's quiet day or
month is zeros."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.points import day_points, is_active
from services.scoring.store import queries, users
from shared.errors import NotFound

TIMELINE_DAYS = 35  # the default range, the events' acceptance window (SPEC §3)


async def first_seen_of(session: AsyncSession, user_id: str) -> date:
    """The user's `first_seen` day; 404 `user_not_found` when scoring never saw them."""
    day = await users.first_seen(session, user_id)
    if day is None:
        raise NotFound(f"scoring never applied an event of user {user_id}", code="user_not_found")
    return day


async def read_user_day(session: AsyncSession, user_id: str, day: date) -> dict[str, Any]:
    first_seen = await first_seen_of(session, user_id)
    row = await queries.user_day(session, user_id, day)
    points = day_points(row["messages"], row["online_seconds_pc"], row["online_seconds_mobile"])
    return {"user_id": user_id, "first_seen": first_seen, **row, **asdict(points)}


async def read_user_month(session: AsyncSession, user_id: str, month: date) -> dict[str, Any]:
    first_seen = await first_seen_of(session, user_id)
    row = await queries.user_month(session, user_id, month)
    return {
        "user_id": user_id,
        "first_seen": first_seen,
        **row,
        "active": is_active(row["messages"]),
    }


def default_range(today: date) -> tuple[date, date]:
    """The last `TIMELINE_DAYS` local days, today included."""
    return today - timedelta(days=TIMELINE_DAYS - 1), today


async def read_timeline(
    session: AsyncSession,
    user_id: str,
    first: date,
    last: date,
    limit: int,
    before: date | None,
) -> tuple[date, list[dict[str, Any]]]:
    """The user's `first_seen` and one page of their days in [first, last] with metric effects,
    newest first: each day's counters, its points, and whether its month is `active`."""
    first_seen = await first_seen_of(session, user_id)
    days = await queries.user_days(session, user_id, first, last, limit, before)
    items = []
    for row in days:
        month_messages = row.pop("month_messages")
        points = day_points(row["messages"], row["online_seconds_pc"], row["online_seconds_mobile"])
        items.append({**row, **asdict(points), "month_active": is_active(month_messages)})
    return first_seen, items
