"""Lifecycle stages, provinces and business KPIs in the database (SPEC §12).

User-month rows (`lifecycle`, `loyal`, `top_group`) belong to one partition like the rest of
a user's rows. KPI rows are shared between replicas: they change only by deltas, which commute,
written in one statement in key order after every group lock of the batch (usecases/kpis.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.contributions import UserMonthKey
from services.scoring.domain.kpis import (
    COUNT_FIELDS,
    DAY_KPIS,
    MONTH_KPIS,
    PENDING_PREFIX,
    Client,
    Counts,
    KpiDeltas,
)
from services.scoring.domain.lifecycle import Lifecycle, MonthActivity, Stage
from services.scoring.domain.sessions import UserDayKey
from services.scoring.store.rules_sql import is_active_sql


@dataclass(frozen=True, slots=True)
class MonthSnapshot:
    """What a user-month contributes to the KPIs from, as stored."""

    counts: Counts
    lifecycle: Lifecycle
    top_group: str | None


async def month_snapshots(
    session: AsyncSession, keys: Collection[UserMonthKey]
) -> dict[UserMonthKey, MonthSnapshot]:
    """The stored user months among these keys (absent: no row)."""
    if not keys:
        return {}
    ordered = sorted(keys)
    rows = await session.execute(
        text(
            f"SELECT um.user_id, um.month, um.lifecycle, um.loyal, um.top_group, "
            f"{', '.join('um.' + f for f in COUNT_FIELDS)} FROM user_month um "
            "JOIN unnest(CAST(:u AS text[]), CAST(:m AS date[])) AS k(u, m) "
            "ON um.user_id = k.u AND um.month = k.m"
        ),
        {"u": [k[0] for k in ordered], "m": [k[1] for k in ordered]},
    )
    return {
        (r[0], r[1]): MonthSnapshot(Counts(*r[5:]), Lifecycle(cast(Stage | None, r[2]), r[3]), r[4])
        for r in rows
    }


async def days_of_months(
    session: AsyncSession, keys: Collection[UserMonthKey]
) -> dict[UserDayKey, Counts]:
    """Every stored day of these user months."""
    if not keys:
        return {}
    ordered = sorted(keys)
    rows = await session.execute(
        text(
            f"SELECT d.user_id, d.day, {', '.join('d.' + f for f in COUNT_FIELDS)} FROM user_day d "
            "JOIN unnest(CAST(:u AS text[]), CAST(:m AS date[])) AS k(u, m) "
            "ON d.user_id = k.u AND d.day >= k.m AND d.day < k.m + interval '1 month'"
        ),
        {"u": [k[0] for k in ordered], "m": [k[1] for k in ordered]},
    )
    return {(r[0], r[1]): Counts(*r[2:]) for r in rows}


async def add_group_messages(
    session: AsyncSession, increments: Mapping[tuple[str, date, str], int]
) -> set[UserMonthKey]:
    """user_group_messages += increments; then each touched user month's `top_group` is the
    group with most messages (ties: smallest id). Returns the user months touched."""
    keys = sorted(increments)
    if not keys:
        return set()
    await session.execute(
        text(
            "INSERT INTO user_group_messages (user_id, month, group_id, messages) "
            "SELECT * FROM unnest(CAST(:u AS text[]), CAST(:m AS date[]), CAST(:g AS text[]), "
            "CAST(:n AS int[])) ON CONFLICT (user_id, month, group_id) "
            "DO UPDATE SET messages = user_group_messages.messages + excluded.messages"
        ),
        {
            "u": [k[0] for k in keys],
            "m": [k[1] for k in keys],
            "g": [k[2] for k in keys],
            "n": [increments[k] for k in keys],
        },
    )
    months = sorted({(u, m) for u, m, _ in keys})
    await session.execute(
        text("""
        UPDATE user_month um SET top_group = t.group_id
        FROM (SELECT DISTINCT ON (x.user_id, x.month) x.user_id, x.month, x.group_id
              FROM user_group_messages x
              JOIN unnest(CAST(:u AS text[]), CAST(:m AS date[])) AS k(u, m)
                ON x.user_id = k.u AND x.month = k.m
              ORDER BY x.user_id, x.month, x.messages DESC, x.group_id) t
        WHERE um.user_id = t.user_id AND um.month = t.month
          AND um.top_group IS DISTINCT FROM t.group_id"""),
        {"u": [k[0] for k in months], "m": [k[1] for k in months]},
    )
    return set(months)


async def provinces_of(session: AsyncSession, group_ids: Iterable[str]) -> dict[str, str | None]:
    """Each group's province (None until its `group_created` arrived)."""
    ids = sorted(set(group_ids))
    if not ids:
        return {}
    rows = await session.execute(
        text("SELECT group_id, province FROM groups WHERE group_id = ANY(:g)"), {"g": ids}
    )
    return dict(rows.tuples().all())


async def pending_rows(
    session: AsyncSession, group_ids: Iterable[str]
) -> tuple[KpiDeltas, KpiDeltas]:
    """The KPI rows counted under these groups' pending keys (`?<group>`), day and month: the
    caller holds the groups' locks, so no one else writes them meanwhile."""
    keys = [PENDING_PREFIX + g for g in sorted(set(group_ids))]
    if not keys:
        return {}, {}
    out: list[KpiDeltas] = []
    for table, period, names in (("kpi_day", "day", DAY_KPIS), ("kpi_month", "month", MONTH_KPIS)):
        rows = await session.execute(
            text(
                f"SELECT {period}, province, client, {', '.join(names)} FROM {table} "
                "WHERE province = ANY(:p)"
            ),
            {"p": keys},
        )
        out.append({(r[0], r[1], cast(Client, r[2])): list(r[3:]) for r in rows})
    return out[0], out[1]


async def activity(
    session: AsyncSession, keys: Collection[UserMonthKey]
) -> dict[UserMonthKey, tuple[MonthActivity, Lifecycle | None]]:
    """What each user month's stage is decided from, and its stored lifecycle (None: no row)."""
    if not keys:
        return {}
    ordered = sorted(keys)
    rows = await session.execute(
        text(f"""
        SELECT k.u, k.m, date_trunc('month', u.first_seen)::date,
               coalesce({is_active_sql("c.messages")}, false),
               coalesce({is_active_sql("p.messages")}, false),
               coalesce({is_active_sql("pp.messages")}, false),
               c.user_id IS NOT NULL, c.lifecycle, c.loyal
        FROM unnest(CAST(:u AS text[]), CAST(:m AS date[])) AS k(u, m)
        JOIN users u ON u.user_id = k.u
        LEFT JOIN user_month c ON c.user_id = k.u AND c.month = k.m
        LEFT JOIN user_month p ON p.user_id = k.u AND p.month = k.m - interval '1 month'
        LEFT JOIN user_month pp ON pp.user_id = k.u AND pp.month = k.m - interval '2 months'"""),
        {"u": [k[0] for k in ordered], "m": [k[1] for k in ordered]},
    )
    return {
        (r[0], r[1]): (
            MonthActivity(r[2], r[1], r[3], r[4], r[5]),
            Lifecycle(r[7], r[8]) if r[6] else None,
        )
        for r in rows
    }


async def save_lifecycles(session: AsyncSession, changed: Mapping[UserMonthKey, Lifecycle]) -> None:
    """Store these user months' stages; a month without a row gets one of zeros (a `new` month
    without counters, a `dormant` one)."""
    keys = sorted(changed)
    if not keys:
        return
    await session.execute(
        text(
            "INSERT INTO user_month (user_id, month, lifecycle, loyal) "
            "SELECT * FROM unnest(CAST(:u AS text[]), CAST(:m AS date[]), CAST(:s AS text[]), "
            "CAST(:l AS boolean[])) ON CONFLICT (user_id, month) "
            "DO UPDATE SET lifecycle = excluded.lifecycle, loyal = excluded.loyal"
        ),
        {
            "u": [k[0] for k in keys],
            "m": [k[1] for k in keys],
            "s": [changed[k].stage for k in keys],
            "l": [changed[k].loyal for k in keys],
        },
    )


async def add_to_kpis(session: AsyncSession, days: KpiDeltas, months: KpiDeltas) -> None:
    """kpi_day / kpi_month += deltas, one statement each in key order."""
    for table, period, names, deltas in (
        ("kpi_day", "day", DAY_KPIS, days),
        ("kpi_month", "month", MONTH_KPIS, months),
    ):
        keys = sorted(deltas)
        if not keys:
            continue
        params: dict[str, Any] = {
            "t": [k[0] for k in keys],
            "p": [k[1] for k in keys],
            "c": [k[2] for k in keys],
        }
        for i, name in enumerate(names):
            params[name] = [deltas[k][i] for k in keys]
        arrays = ", ".join(f"CAST(:{n} AS bigint[])" for n in names)
        await session.execute(
            text(
                f"INSERT INTO {table} ({period}, province, client, {', '.join(names)}) "
                f"SELECT * FROM unnest(CAST(:t AS date[]), CAST(:p AS text[]), "
                f"CAST(:c AS text[]), {arrays}) ON CONFLICT ({period}, province, client) "
                f"DO UPDATE SET {', '.join(f'{n} = {table}.{n} + excluded.{n}' for n in names)}"
            ),
            params,
        )


async def records_of_users(session: AsyncSession, user_ids: Collection[str]) -> list[str]:
    """The changelog keys of every stored day and month of these users."""
    if not user_ids:
        return []
    rows = await session.execute(
        text(
            "SELECT 'user:' || user_id || ':' || to_char(day, 'YYYY-MM-DD') FROM user_day "
            "WHERE user_id = ANY(:u) UNION ALL "
            "SELECT 'user:' || user_id || ':' || to_char(month, 'YYYY-MM') FROM user_month "
            "WHERE user_id = ANY(:u)"
        ),
        {"u": sorted(user_ids)},
    )
    return [r[0] for r in rows]


async def kpi_rows(session: AsyncSession, grain: str, period: date) -> list[tuple[Any, ...]]:
    """The stored KPI rows of one day or month: (province key, client, *values)."""
    table, column, names = (
        ("kpi_day", "day", DAY_KPIS) if grain == "day" else ("kpi_month", "month", MONTH_KPIS)
    )
    rows = await session.execute(
        text(f"SELECT province, client, {', '.join(names)} FROM {table} WHERE {column} = :p"),
        {"p": period},
    )
    return [tuple(r) for r in rows]


async def active_user_days(session: AsyncSession, month: date) -> list[tuple[Any, ...]]:
    """Σ daily active users over a month's days, per (province key, client)."""
    rows = await session.execute(
        text(
            "SELECT province, client, sum(active_users) FROM kpi_day "
            "WHERE day >= :m AND day < :m + interval '1 month' GROUP BY 1, 2"
        ),
        {"m": month},
    )
    return [tuple(r) for r in rows]
