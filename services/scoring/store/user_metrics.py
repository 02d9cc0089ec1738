"""User days (incremented) and user months (recomputed from their days), SPEC §4."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import Result, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.batch import SESSION_COUNTERS, UserDayDelta
from services.scoring.domain.contributions import MemberMonth, UserMonthKey
from services.scoring.domain.kpis import COUNT_FIELDS, Counts
from services.scoring.domain.sessions import UserDayKey
from services.scoring.store.rules_sql import is_active_sql, message_points_sql, online_points_sql
from shared.metric_fields import USER_DAY_COUNTERS, USER_MONTH_COUNTERS

# A month's columns from its days: sums, except the derived ones (caps apply per day).
_MONTH_FROM_DAYS = {
    "online_points": f"sum({online_points_sql()})",
    "message_points": f"sum({message_points_sql()})",
    "activity_points": f"sum({online_points_sql()} + {message_points_sql()})",
    "active_days": f"count(*) FILTER (WHERE {is_active_sql()})",
}
# Stored beside the published counters, for the business KPIs (domain.kpis).
_MONTH_COLUMNS = (*USER_MONTH_COUNTERS, "messages_mobile", *SESSION_COUNTERS)
_MONTH_SELECT = ", ".join(_MONTH_FROM_DAYS.get(c, f"sum({c})") for c in _MONTH_COLUMNS)
_DAY_COLUMNS = (*USER_DAY_COUNTERS, *SESSION_COUNTERS)
_MEMBER_MONTH = "user_id, month, messages, activity_points, points_delta"


async def add_to_user_days(
    session: AsyncSession, increments: Mapping[UserDayKey, UserDayDelta]
) -> dict[UserDayKey, Counts]:
    """user_day += increments, one statement in key order; returns the days written with what
    the business KPIs count of them afterwards."""
    keys = sorted(increments)
    if not keys:
        return {}
    cols = ", ".join(_DAY_COLUMNS)
    arrays = ", ".join(f"CAST(:{c} AS bigint[])" for c in _DAY_COLUMNS)
    updates = ", ".join(f"{c} = user_day.{c} + excluded.{c}" for c in _DAY_COLUMNS)
    rows = [increments[k] for k in keys]
    params: dict[str, Any] = {"u": [k[0] for k in keys], "d": [k[1] for k in keys]}
    for c in _DAY_COLUMNS:
        params[c] = [getattr(r, c) for r in rows]
    written = await session.execute(
        text(
            f"INSERT INTO user_day (user_id, day, {cols}) "
            f"SELECT * FROM unnest(CAST(:u AS text[]), CAST(:d AS date[]), {arrays}) "
            f"ON CONFLICT (user_id, day) DO UPDATE SET {updates} "
            f"RETURNING user_id, day, {', '.join(COUNT_FIELDS)}"
        ),
        params,
    )
    return {(r.user_id, r.day): Counts(*r[2:]) for r in written}


async def recompute_user_months(
    session: AsyncSession, keys: Collection[UserMonthKey]
) -> dict[UserMonthKey, MemberMonth]:
    """Sum these user months again from their days; returns what their groups count of them."""
    if not keys:
        return {}
    ordered = sorted(keys)
    rows = await session.execute(
        text(f"""
        INSERT INTO user_month (user_id, month, {", ".join(_MONTH_COLUMNS)})
        SELECT d.user_id, t.month, {_MONTH_SELECT}
        FROM unnest(CAST(:u AS text[]), CAST(:m AS date[])) AS t(user_id, month)
        JOIN user_day d ON d.user_id = t.user_id AND d.day >= t.month
                       AND d.day < (t.month + interval '1 month')
        GROUP BY d.user_id, t.month
        ON CONFLICT (user_id, month) DO UPDATE SET
          {", ".join(f"{c} = excluded.{c}" for c in _MONTH_COLUMNS)}
        RETURNING {_MEMBER_MONTH}"""),
        {"u": [k[0] for k in ordered], "m": [k[1] for k in ordered]},
    )
    return _member_months(rows)


async def member_months(
    session: AsyncSession, keys: Collection[UserMonthKey]
) -> dict[UserMonthKey, MemberMonth]:
    """What the groups count of these user months (absent: no activity that month)."""
    if not keys:
        return {}
    ordered = sorted(keys)
    rows = await session.execute(
        text(
            f"SELECT {_MEMBER_MONTH} FROM user_month um "
            "JOIN unnest(CAST(:u AS text[]), CAST(:m AS date[])) AS k(u, m) "
            "ON um.user_id = k.u AND um.month = k.m"
        ),
        {"u": [k[0] for k in ordered], "m": [k[1] for k in ordered]},
    )
    return _member_months(rows)


def _member_months(rows: Result[Any]) -> dict[UserMonthKey, MemberMonth]:
    return {
        (r.user_id, r.month): MemberMonth(r.messages, r.activity_points, r.points_delta)
        for r in rows
    }
