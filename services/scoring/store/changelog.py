"""The changelog of SPEC §4 in the database: which entities changed (written in the batch's
transaction), and their current rows (read when the relay publishes them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.periods import end_of_month, month_label
from services.scoring.store.friends import (
    friend_ids_sql,
    friends_added_day_sql,
    friends_added_month_sql,
)
from services.scoring.store.rules_sql import member_at_sql
from shared.metric_fields import GROUP_MONTH_COUNTERS


def user_day_key(user_id: str, day: date) -> str:
    return f"user:{user_id}:{day.isoformat()}"


def user_month_key(user_id: str, month: date) -> str:
    return f"user:{user_id}:{month_label(month)}"


def group_month_key(group_id: str, month: date) -> str:
    return f"group:{group_id}:{month_label(month)}"


async def mark_changed(session: AsyncSession, keys: Iterable[str]) -> None:
    """Record that these entities changed; a key already waiting is moved to the back."""
    ordered = sorted(set(keys))
    if ordered:
        await session.execute(
            text(
                "INSERT INTO changelog_outbox (key) SELECT * FROM unnest(CAST(:k AS text[])) "
                "ON CONFLICT (key) DO UPDATE SET seq = nextval('changelog_seq')"
            ),
            {"k": ordered},
        )


async def user_day_rows(
    session: AsyncSession, keys: Sequence[tuple[str, date]]
) -> list[dict[str, Any]]:
    """The stored user days among these (user, day) keys, with the user's `first_seen`, and
    `friends_added` / `friend_ids` from the pairs' first adds (domain/friends.py)."""
    extra = (
        f", {friends_added_day_sql('t', 'day')} AS friends_added_counted, "
        f"{friend_ids_sql('t', 'day')} AS friend_ids"
    )
    return _counted(await _rows(session, "user_day", "user_id", "day", keys, extra))


async def user_month_rows(
    session: AsyncSession, keys: Sequence[tuple[str, date]]
) -> list[dict[str, Any]]:
    """The stored user months among these (user, month) keys (stage and `loyal` included),
    with the user's `first_seen`; `friends_added` from the pairs' first adds."""
    extra = f", {friends_added_month_sql('t', 'month')} AS friends_added_counted"
    return _counted(await _rows(session, "user_month", "user_id", "month", keys, extra))


def _counted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        r["friends_added"] = int(r.pop("friends_added_counted"))
    return rows


async def group_month_rows(
    session: AsyncSession, keys: Sequence[tuple[str, date]], tz: ZoneInfo
) -> list[dict[str, Any]]:
    """Each known group's month among these keys, with its attributes and its members as of
    the end of the month (for the current month: as of now); without a month row, counters 0
    but `members` (see queries.GROUP_MONTH_SQL)."""
    if not keys:
        return []
    counters = ", ".join(f"COALESCE(gm.{c}, 0) AS {c}" for c in GROUP_MONTH_COUNTERS)
    rows = await session.execute(
        text(f"""
        SELECT k.g AS group_id, k.m AS month, {counters}, gm.group_id IS NULL AS no_row,
               g.owner_id, g.name, g.province,
               g.created_at, g.dissolved_at,
               ARRAY(SELECT DISTINCT s.user_id FROM membership_spans s
                     WHERE s.group_id = k.g AND {member_at_sql("s", "k.e")}
                     ORDER BY s.user_id) AS member_ids
        FROM unnest(CAST(:g AS text[]), CAST(:m AS date[]), CAST(:e AS timestamptz[]))
             AS k(g, m, e)
        LEFT JOIN groups g ON g.group_id = k.g
        LEFT JOIN group_month gm ON gm.group_id = k.g AND gm.month = k.m
        WHERE g.group_id IS NOT NULL OR gm.group_id IS NOT NULL"""),
        {
            "g": [k[0] for k in keys],
            "m": [k[1] for k in keys],
            "e": [end_of_month(k[1], tz) for k in keys],
        },
    )
    out = [dict(r._mapping) for r in rows]
    for row in out:
        if row.pop("no_row"):
            row["members"] = len(row["member_ids"])
    return out


async def _rows(
    session: AsyncSession,
    table: str,
    id_column: str,
    period_column: str,
    keys: Sequence[tuple[str, date]],
    extra: str = "",
) -> list[dict[str, Any]]:
    if not keys:
        return []
    rows = await session.execute(
        text(
            f"SELECT t.*, u.first_seen{extra} FROM {table} t "
            f"JOIN unnest(CAST(:i AS text[]), CAST(:p AS date[])) "
            f"AS k(i, p) ON t.{id_column} = k.i AND t.{period_column} = k.p "
            f"LEFT JOIN users u ON u.user_id = t.{id_column}"
        ),
        {"i": [k[0] for k in keys], "p": [k[1] for k in keys]},
    )
    return [dict(r._mapping) for r in rows]
