"""The changelog of SPEC §4: which entities changed (written in the batch's transaction) and
their full current values (rendered when the relay publishes, once per key per pass)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.periods import end_of_month, month_label, parse_month
from services.scoring.domain.vitality import Weights, message_points, online_points, vitality
from shared.metric_fields import GROUP_MONTH_COUNTERS, USER_DAY_COUNTERS, USER_MONTH_COUNTERS
from shared.records import METRIC_RECORD, RECORD_VERSION

USER_DAY_COLUMNS = USER_DAY_COUNTERS
USER_MONTH_COLUMNS = USER_MONTH_COUNTERS
GROUP_MONTH_COLUMNS = GROUP_MONTH_COUNTERS


def user_day_key(user_id: str, day: date) -> str:
    return f"user:{user_id}:{day.isoformat()}"


def user_month_key(user_id: str, month: date) -> str:
    return f"user:{user_id}:{month_label(month)}"


def group_month_key(group_id: str, month: date) -> str:
    return f"group:{group_id}:{month_label(month)}"


def derived_day_points(row: dict[str, Any]) -> dict[str, int]:
    op = online_points(row["online_seconds_pc"], row["online_seconds_mobile"])
    mp = message_points(row["messages"])
    return {"online_points": op, "message_points": mp, "activity_points": op + mp}


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


async def render(session: AsyncSession, keys: list[str], tz: ZoneInfo) -> dict[str, bytes]:
    """Full current values of the given changelog keys (ids may contain ':'; periods do not).

    A group's record also carries its attributes and its members as of the end of the month
    (for the current month: as of now), which rewards needs for owners, members and the
    "effective active members" of SPEC §1.
    """
    days: list[tuple[str, date]] = []
    months: list[tuple[str, date]] = []
    groups: list[tuple[str, date]] = []
    for key in keys:
        head, _, period = key.rpartition(":")
        entity, _, entity_id = head.partition(":")
        if entity == "group":
            groups.append((entity_id, parse_month(period)))
        elif len(period) == 10:
            days.append((entity_id, date.fromisoformat(period)))
        else:
            months.append((entity_id, parse_month(period)))
    out: dict[str, bytes] = {}
    for r in await _rows(session, "user_day", "user_id", "day", days):
        out[user_day_key(r["user_id"], r["day"])] = _record(
            {
                "entity": "user",
                "id": r["user_id"],
                "period": r["day"].isoformat(),
                "grain": "day",
                **{c: r[c] for c in USER_DAY_COLUMNS},
                **derived_day_points(r),
            }
        )
    for r in await _rows(session, "user_month", "user_id", "month", months):
        out[user_month_key(r["user_id"], r["month"])] = _record(
            {
                "entity": "user",
                "id": r["user_id"],
                "period": month_label(r["month"]),
                "grain": "month",
                **{c: r[c] for c in USER_MONTH_COLUMNS},
                "active": r["messages"] >= 1,
            }
        )
    if groups:
        w = await default_weights(session)
        for r in await _group_rows(session, groups, tz):
            out[group_month_key(r["group_id"], r["month"])] = _record(
                {
                    "entity": "group",
                    "id": r["group_id"],
                    "period": month_label(r["month"]),
                    "grain": "month",
                    **{c: r[c] for c in GROUP_MONTH_COLUMNS},
                    "vitality": vitality(
                        r["points_growth"], r["activity_points"], r["bonus_points"], w
                    ),
                    "owner_id": r["owner_id"],
                    "name": r["name"],
                    "province": r["province"],
                    "created_at": r["created_at"],
                    "dissolved_at": r["dissolved_at"],
                    "member_ids": r["member_ids"],
                }
            )
    return out


def _record(doc: dict[str, Any]) -> bytes:
    """A changelog record, checked against its contract (shared.records) before it leaves."""
    doc["v"] = RECORD_VERSION
    METRIC_RECORD.validate_python(doc)
    return orjson.dumps(doc)


async def _group_rows(
    session: AsyncSession, keys: list[tuple[str, date]], tz: ZoneInfo
) -> list[dict[str, Any]]:
    counters = ", ".join(f"COALESCE(gm.{c}, 0) AS {c}" for c in GROUP_MONTH_COLUMNS)
    rows = await session.execute(
        text(f"""
        SELECT k.g AS group_id, k.m AS month, {counters}, g.owner_id, g.name, g.province,
               g.created_at, g.dissolved_at,
               ARRAY(SELECT DISTINCT s.user_id FROM membership_spans s
                     WHERE s.group_id = k.g AND s.joined_at < k.e
                       AND (s.left_at IS NULL OR s.left_at >= k.e)
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
    return [dict(r._mapping) for r in rows]


async def _rows(
    session: AsyncSession,
    table: str,
    id_column: str,
    period_column: str,
    keys: list[tuple[str, date]],
) -> list[dict[str, Any]]:
    if not keys:
        return []
    rows = await session.execute(
        text(
            f"SELECT t.* FROM {table} t JOIN unnest(CAST(:i AS text[]), CAST(:p AS date[])) "
            f"AS k(i, p) ON t.{id_column} = k.i AND t.{period_column} = k.p"
        ),
        {"i": [k[0] for k in keys], "p": [k[1] for k in keys]},
    )
    return [dict(r._mapping) for r in rows]


async def default_weights(session: AsyncSession) -> Weights:
    row = (
        await session.execute(
            text("SELECT w_growth, w_activity, w_bonus FROM weight_profiles WHERE name = 'default'")
        )
    ).first()
    return Weights(row.w_growth, row.w_activity, row.w_bonus) if row else Weights()
