"""Reads for the scoring API: user days and months, group months, leaderboards, profiles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.periods import end_of_month
from services.scoring.domain.vitality import Weights
from services.scoring.store.changelog import USER_DAY_COLUMNS, USER_MONTH_COLUMNS
from shared.audit import audit
from shared.metric_fields import GROUP_MONTH_COUNTERS

# Parameters are cast: asyncpg would otherwise type them after the integer columns and truncate.
VITALITY_SQL = (
    "(CAST(:wg AS float8) * gm.points_growth + CAST(:wa AS float8) * gm.activity_points"
    " + CAST(:wb AS float8) * gm.bonus_points)"
)
# A province's groups, each with its month: driven from the province index with one primary-key
# lookup per group. (A plain join scans every group's month and hash-joins: ~30 ms at 100k
# groups instead of ~12 ms; OFFSET 0 keeps the planner from flattening the lateral subquery.)
PROVINCE_MONTH_SQL = (
    "groups g CROSS JOIN LATERAL (SELECT * FROM group_month x "
    "WHERE x.group_id = g.group_id AND x.month = :m OFFSET 0) gm"
)
ELIGIBLE_SQL = (
    "g.created_at IS NOT NULL AND g.created_at < :month_end "
    "AND (g.dissolved_at IS NULL OR g.dissolved_at >= :month_end)"
)


async def user_day(session: AsyncSession, user_id: str, day: date) -> dict[str, Any]:
    row = (await session.execute(
        text(f"SELECT {', '.join(USER_DAY_COLUMNS)} FROM user_day WHERE user_id = :u AND day = :d"),
        {"u": user_id, "d": day},
    )).first()  # fmt: skip
    return dict(row._mapping) if row else dict.fromkeys(USER_DAY_COLUMNS, 0)


async def user_month(session: AsyncSession, user_id: str, month: date) -> dict[str, Any]:
    row = (await session.execute(
        text(f"SELECT {', '.join(USER_MONTH_COLUMNS)} FROM user_month "
             "WHERE user_id = :u AND month = :m"),
        {"u": user_id, "m": month},
    )).first()  # fmt: skip
    return dict(row._mapping) if row else dict.fromkeys(USER_MONTH_COLUMNS, 0)


async def profile(session: AsyncSession, name: str) -> Weights | None:
    row = (await session.execute(
        text("SELECT w_growth, w_activity, w_bonus FROM weight_profiles WHERE name = :n"),
        {"n": name},
    )).first()  # fmt: skip
    return Weights(row.w_growth, row.w_activity, row.w_bonus) if row else None


async def profiles(session: AsyncSession) -> list[dict[str, Any]]:
    rows = await session.execute(text(
        "SELECT name, w_growth, w_activity, w_bonus, updated_at, updated_by FROM weight_profiles "
        "ORDER BY name"))  # fmt: skip
    return [dict(r._mapping) for r in rows]


async def save_profile(
    session: AsyncSession, name: str, w: Weights, by: str
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Upsert a profile; return (before, after) for the audit trail."""
    before = (await session.execute(
        text("SELECT name, w_growth, w_activity, w_bonus FROM weight_profiles WHERE name = :n "
             "FOR UPDATE"), {"n": name})).first()  # fmt: skip
    after = (await session.execute(
        text("INSERT INTO weight_profiles (name, w_growth, w_activity, w_bonus, updated_by) "
             "VALUES (:n, :g, :a, :b, :by) ON CONFLICT (name) DO UPDATE SET w_growth = :g, "
             "w_activity = :a, w_bonus = :b, updated_at = now(), updated_by = :by "
             "RETURNING name, w_growth, w_activity, w_bonus, updated_at, updated_by"),
        {"n": name, "g": w.growth, "a": w.activity, "b": w.bonus, "by": by},
    )).one()  # fmt: skip
    before_d = dict(before._mapping) if before else None
    after_d = dict(after._mapping)
    await audit(session, by, "profile.save", name, before_d or None, after_d)
    return before_d, after_d


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
        "wg": w.growth,
        "wa": w.activity,
        "wb": w.bonus,
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
    session: AsyncSession, group_id: str, month: date, w: Weights, tz: ZoneInfo, top: int = 10
) -> dict[str, Any] | None:
    params = {
        "g": group_id,
        "m": month,
        "wg": w.growth,
        "wa": w.activity,
        "wb": w.bonus,
        "month_end": end_of_month(month, tz),
        "top": top,
    }
    row = (await session.execute(
        text(f"""
        SELECT g.group_id, g.name, g.province, g.owner_id, g.created_at, g.dissolved_at,
               gm.members, gm.active_members, gm.activity_points, gm.points_growth,
               gm.bonus_points, gm.group_messages, {VITALITY_SQL} AS vitality,
               ({ELIGIBLE_SQL}) AS ranked
        FROM groups g LEFT JOIN group_month gm ON gm.group_id = g.group_id AND gm.month = :m
        WHERE g.group_id = :g"""), params)).first()  # fmt: skip
    if row is None:
        return None
    result = dict(row._mapping)
    for key in (*GROUP_MONTH_COUNTERS, "vitality"):  # no row yet: all zero
        result[key] = result[key] or 0
    result["rank"] = None
    if result["ranked"] and result["province"]:
        result["rank"] = 1 + (await session.execute(text(f"""
            SELECT count(*) FROM {PROVINCE_MONTH_SQL}
            WHERE g.province = :p AND {ELIGIBLE_SQL}
              AND {_ranked("before", ":v", ":am", ":g")}"""),
            params | {"p": result["province"], "v": result["vitality"],
                      "am": result["active_members"]})).scalar_one()  # fmt: skip
    members = await session.execute(
        text("""
        SELECT s.user_id, COALESCE(um.activity_points, 0) AS activity_points,
               COALESCE(um.points_delta, 0) AS points_delta, COALESCE(um.messages, 0) AS messages,
               (CAST(:wa AS float8) * COALESCE(um.activity_points, 0)
                + CAST(:wg AS float8) * COALESCE(um.points_delta, 0))
                   AS contribution
        FROM (SELECT DISTINCT user_id FROM membership_spans WHERE group_id = :g
              AND joined_at < :month_end AND (left_at IS NULL OR left_at >= :month_end)) s
        LEFT JOIN user_month um ON um.user_id = s.user_id AND um.month = :m
        ORDER BY contribution DESC, s.user_id ASC LIMIT :top"""),
        params,
    )
    result["top_members"] = [dict(r._mapping) for r in members]
    return result


async def group_members(
    session: AsyncSession, group_id: str, month_end: datetime, limit: int, after: str | None
) -> list[str]:
    """Members as of the end of the month (as of now for the current month), by user id."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT user_id FROM membership_spans WHERE group_id = :g "
            "AND joined_at < :e AND (left_at IS NULL OR left_at >= :e) "
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
