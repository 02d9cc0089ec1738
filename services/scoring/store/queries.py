"""Reads for the scoring API: user days and months, group months, leaderboards, members."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.periods import end_of_month
from services.scoring.domain.vitality import Weights
from services.scoring.store.friends import friends_added_day_sql, friends_added_month_sql
from services.scoring.store.rules_sql import (
    member_at_sql,
    member_contribution_sql,
    vitality_sql,
    weight_params,
)
from shared.metric_fields import GROUP_MONTH_COUNTERS, USER_DAY_COUNTERS, USER_MONTH_COUNTERS

VITALITY_SQL = vitality_sql("gm.{}")
# A group's month `gm`, for the group `g`: its row, or — a month nothing was written for —
# zeros with the members as of the month's end (SPEC §9: a group is on the leaderboard from the
# month it exists). A month without a row had no activity (any would have written the row), so
# only its members need counting, from the spans; COALESCE counts them only then.
_ZEROS_WITHOUT_ROW = ", ".join(
    f"COALESCE(x.{c}, 0) AS {c}" for c in GROUP_MONTH_COUNTERS if c != "members"
)
GROUP_MONTH_SQL = f"""CROSS JOIN LATERAL (
    SELECT COALESCE(x.members, (SELECT count(DISTINCT s.user_id) FROM membership_spans s
                                WHERE s.group_id = g.group_id
                                  AND {member_at_sql("s", ":month_end")})) AS members,
           {_ZEROS_WITHOUT_ROW}
    FROM (SELECT 1) one LEFT JOIN group_month x ON x.group_id = g.group_id AND x.month = :m
    OFFSET 0) gm"""
# A province's groups, each with its month: driven from the province index with one primary-key
# lookup per group. (A plain join scans every group's month and hash-joins: ~30 ms at 100k
# groups instead of ~12 ms; OFFSET 0 keeps the planner from flattening the lateral subquery.)
PROVINCE_MONTH_SQL = f"groups g {GROUP_MONTH_SQL}"
# On a leaderboard (SPEC §4, §9): created, and not dissolved, as of the month's end, and with a
# month — members as of its end, or group messages or bonus cards in it.
ELIGIBLE_SQL = (
    "g.created_at IS NOT NULL AND g.created_at < :month_end "
    "AND (g.dissolved_at IS NULL OR g.dissolved_at >= :month_end) "
    "AND (gm.members > 0 OR gm.group_messages > 0 OR gm.bonus_points > 0)"
)


# `friends_added` from the pairs' first adds (domain/friends.py), the rest as stored.
_DAY_COUNTERS = ", ".join(
    f"{friends_added_day_sql('{t}', 'day')} AS friends_added"
    if c == "friends_added"
    else f"{{t}}.{c}"
    for c in USER_DAY_COUNTERS
)
_MONTH_COUNTERS = ", ".join(
    f"{friends_added_month_sql('m', 'month')} AS friends_added"
    if c == "friends_added"
    else f"m.{c}"
    for c in USER_MONTH_COUNTERS
)


async def user_day(session: AsyncSession, user_id: str, day: date) -> dict[str, Any]:
    """The stored counters of a user's day (all 0 if none)."""
    row = (await session.execute(
        text(f"SELECT {_DAY_COUNTERS.format(t='d')} FROM user_day d "
             "WHERE user_id = :u AND day = :d"),
        {"u": user_id, "d": day},
    )).first()  # fmt: skip
    return dict(row._mapping) if row else dict.fromkeys(USER_DAY_COUNTERS, 0)


async def user_month(session: AsyncSession, user_id: str, month: date) -> dict[str, Any]:
    """The stored counters, stage and `loyal` of a user's month (all 0, no stage, if none: a
    month with a stage always has a row)."""
    row = (await session.execute(
        text(f"SELECT {_MONTH_COUNTERS}, lifecycle, loyal FROM user_month m "
             "WHERE user_id = :u AND month = :m"),
        {"u": user_id, "m": month},
    )).first()  # fmt: skip
    if row is None:
        return {**dict.fromkeys(USER_MONTH_COUNTERS, 0), "lifecycle": None, "loyal": False}
    return dict(row._mapping)


async def user_days(
    session: AsyncSession, user_id: str, first: date, last: date, limit: int, before: date | None
) -> list[dict[str, Any]]:
    """The user's days in [first, last] with a non-zero counter, newest first, each with its
    month's pc/mobile `month_messages`; `before`: continue after that day."""
    rows = await session.execute(
        text(f"""
        SELECT d.day, {_DAY_COUNTERS.format(t="d")},
               COALESCE(um.messages, 0) AS month_messages
        FROM user_day d
        LEFT JOIN user_month um
               ON um.user_id = d.user_id AND um.month = date_trunc('month', d.day)::date
        WHERE d.user_id = :u AND d.day >= :first AND d.day <= :last
          AND (CAST(:before AS date) IS NULL OR d.day < :before)
          AND ({" OR ".join(f"d.{c} <> 0" for c in USER_DAY_COUNTERS if c != "friends_added")}
               OR {friends_added_day_sql("d", "day")} <> 0)
        ORDER BY d.day DESC LIMIT :n"""),
        {"u": user_id, "first": first, "last": last, "before": before, "n": limit},
    )
    return [dict(r._mapping) for r in rows]


def _ranked(side: str, vitality: str, active: str, group_id: str) -> str:
    """Rows ranked `before` or `after` the given (vitality, active_members, group_id) position."""
    worse, later = ("<", ">") if side == "after" else (">", "<")
    v = f"CAST({vitality} AS float8)"
    return (
        f"({VITALITY_SQL} {worse} {v} OR ({VITALITY_SQL} = {v} AND "
        f"(gm.active_members {worse} {active} OR "
        f"(gm.active_members = {active} AND g.group_id {later} {group_id}))))"
    )


@dataclass(frozen=True, slots=True)
class BoardCursor:
    """Where a leaderboard page ended: the last row's sort key and rank."""

    vitality: float
    active_members: int
    group_id: str
    rank: int


async def leaderboard(
    session: AsyncSession,
    month: date,
    province: str,
    w: Weights,
    tz: ZoneInfo,
    *,
    min_members: int = 0,
    min_active_ratio: float = 0.0,
    limit: int = 20,
    after: BoardCursor | None = None,
) -> list[dict[str, Any]]:
    """Eligible groups by vitality desc, active_members desc, group_id asc (SPEC §4)."""
    keyset = ""
    params: dict[str, Any] = {
        "m": month,
        "p": province,
        **weight_params(w),
        "month_end": end_of_month(month, tz),
        "min_members": min_members,
        "ratio": min_active_ratio,
        "limit": limit,
    }
    if after is not None:
        keyset = "AND " + _ranked("after", ":cv", ":ca", ":cg")
        params |= {"cv": after.vitality, "ca": after.active_members, "cg": after.group_id}
    rows = await session.execute(
        text(f"""
        SELECT g.group_id, g.name, g.province, g.owner_id, gm.members, gm.active_members,
               gm.activity_points, gm.points_growth, gm.bonus_points, gm.group_messages,
               {VITALITY_SQL} AS vitality
        FROM {PROVINCE_MONTH_SQL}
        WHERE g.province = :p AND {ELIGIBLE_SQL}
          AND gm.members >= :min_members
          AND gm.active_members >= CAST(:ratio AS float8) * gm.members
          {keyset}
        ORDER BY vitality DESC, gm.active_members DESC, g.group_id ASC
        LIMIT :limit"""),
        params,
    )
    start = after.rank if after else 0
    return [{"rank": start + i + 1, **dict(r._mapping)} for i, r in enumerate(rows)]


async def group_month(
    session: AsyncSession, group_id: str, month: date, w: Weights, tz: ZoneInfo
) -> dict[str, Any] | None:
    """A seen group's attributes and month (`GROUP_MONTH_SQL`), its vitality, and whether it is
    `ranked` (eligible for its province's leaderboard); None for a group never seen."""
    row = (await session.execute(
        text(f"""
        SELECT g.group_id, g.name, g.province, g.owner_id, g.created_at, g.dissolved_at,
               {", ".join(f"gm.{c}" for c in GROUP_MONTH_COUNTERS)},
               {VITALITY_SQL} AS vitality, ({ELIGIBLE_SQL}) AS ranked
        FROM {PROVINCE_MONTH_SQL}
        WHERE g.group_id = :g"""),
        {"g": group_id, "m": month, **weight_params(w), "month_end": end_of_month(month, tz)},
    )).first()  # fmt: skip
    return dict(row._mapping) if row else None


async def groups_ranked_before(
    session: AsyncSession,
    province: str,
    month: date,
    w: Weights,
    tz: ZoneInfo,
    *,
    vitality: float,
    active_members: int,
    group_id: str,
) -> int:
    """How many of the province's eligible groups rank before this position."""
    count = (await session.execute(
        text(f"""
        SELECT count(*) FROM {PROVINCE_MONTH_SQL}
        WHERE g.province = :p AND {ELIGIBLE_SQL}
          AND {_ranked("before", ":v", ":am", ":g")}"""),
        {"p": province, "m": month, **weight_params(w), "month_end": end_of_month(month, tz),
         "v": vitality, "am": active_members, "g": group_id},
    )).scalar_one()  # fmt: skip
    return int(count)


async def top_members(
    session: AsyncSession, group_id: str, month: date, w: Weights, tz: ZoneInfo, top: int
) -> list[dict[str, Any]]:
    """The group's members as of the month's end, by their part of its vitality."""
    rows = await session.execute(
        text(f"""
        SELECT s.user_id, COALESCE(um.activity_points, 0) AS activity_points,
               COALESCE(um.points_delta, 0) AS points_delta, COALESCE(um.messages, 0) AS messages,
               {member_contribution_sql("COALESCE(um.{}, 0)")} AS contribution
        FROM (SELECT DISTINCT user_id FROM membership_spans s WHERE group_id = :g
              AND {member_at_sql("s", ":month_end")}) s
        LEFT JOIN user_month um ON um.user_id = s.user_id AND um.month = :m
        ORDER BY contribution DESC, s.user_id ASC LIMIT :top"""),
        {"g": group_id, "m": month, **weight_params(w), "month_end": end_of_month(month, tz),
         "top": top},
    )  # fmt: skip
    return [dict(r._mapping) for r in rows]


async def group_members(
    session: AsyncSession, group_id: str, month_end: datetime, limit: int, after: str | None
) -> list[str]:
    """Members as of the end of the month (as of now for the current month), by user id."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT user_id FROM membership_spans s WHERE group_id = :g "
            f"AND {member_at_sql('s', ':e')} "
            "AND (CAST(:after AS text) IS NULL OR user_id > :after) ORDER BY user_id LIMIT :n"
        ),
        {"g": group_id, "e": month_end, "after": after, "n": limit},
    )
    return [r.user_id for r in rows]


async def users_with_activity(
    session: AsyncSession, month: date, min_points: int, limit: int, after: str | None
) -> list[dict[str, Any]]:
    """Users whose month activity points are at least `min_points`, by user id."""
    rows = await session.execute(
        text(
            "SELECT user_id, activity_points FROM user_month WHERE month = :m "
            "AND activity_points >= :p AND (CAST(:after AS text) IS NULL OR user_id > :after) "
            "ORDER BY user_id LIMIT :n"
        ),
        {"m": month, "p": min_points, "after": after, "n": limit},
    )
    return [dict(r._mapping) for r in rows]
