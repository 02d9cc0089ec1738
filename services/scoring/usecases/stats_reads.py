"""Read the business KPIs for the API (SPEC §12): one day or month, totals or broken down by
province and/or client, from the KPI rows kept with the aggregates (never from user tables)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.kpis import DAY_KPIS, MONTH_KPIS
from services.scoring.domain.periods import month_of
from services.scoring.domain.stats import PER_USER, Breakdown, KpiRow, days_counted, ratio, slices
from services.scoring.store import kpis
from shared.errors import NotFound


def _rows(raw: list[tuple[Any, ...]]) -> list[KpiRow]:
    return [KpiRow(r[0], r[1], tuple(int(v) for v in r[2:])) for r in raw]


def _item(province: str | None, client: str | None, sums: dict[str, int]) -> dict[str, Any]:
    per_client = client not in (None, "all")
    item: dict[str, Any] = {"province": province, "client": client}
    for name, value in sums.items():
        if name == "online_seconds":
            item["online_hours"] = round(value / 3600, 3)
        elif per_client and (name in PER_USER or name == "checkins"):
            item[name] = None  # per user, not per client (domain.kpis)
        else:
            item[name] = value
    return item


def _future(period: date, today: date, label: str) -> None:
    if period > today:
        raise NotFound(f"{label} is in the future: no statistics yet", code="period_not_found")


async def read_day_stats(
    session: AsyncSession, day: date, by: set[Breakdown], today: date
) -> list[dict[str, Any]]:
    """The day's KPIs per slice, each with `dau_mau` = the day's active users / its month's."""
    _future(day, today, day.isoformat())
    day_slices = slices(_rows(await kpis.kpi_rows(session, "day", day)), DAY_KPIS, by)
    month_slices = slices(
        _rows(await kpis.kpi_rows(session, "month", month_of(day))), MONTH_KPIS, by
    )
    items = []
    for (province, client), sums in sorted(day_slices.items(), key=_order):
        mau = month_slices.get((province, client), {}).get("active_users", 0)
        items.append({**_item(province, client, sums), "dau_mau": ratio(sums["active_users"], mau)})
    return items


async def read_month_stats(
    session: AsyncSession, month: date, by: set[Breakdown], today: date
) -> tuple[int, list[dict[str, Any]]]:
    """The month's KPIs per slice, with `mau` (its active users), `dau_mean` (Σ daily active
    users / days counted) and `dau_mau`; returns the days counted too."""
    _future(month, month_of(today), month.strftime("%Y-%m"))
    days = days_counted(month, today)
    month_slices = slices(_rows(await kpis.kpi_rows(session, "month", month)), MONTH_KPIS, by)
    active_days = slices(
        _rows(await kpis.active_user_days(session, month)), ("active_user_days",), by
    )
    items = []
    for (province, client), sums in sorted(month_slices.items(), key=_order):
        dau_mean = active_days.get((province, client), {}).get("active_user_days", 0) / days
        items.append(
            {
                **_item(province, client, sums),
                "mau": sums["active_users"],
                "dau_mean": round(dau_mean, 3),
                "dau_mau": ratio(dau_mean, sums["active_users"]),
            }
        )
    return days, items


def _order(entry: tuple[tuple[str | None, str | None], Any]) -> tuple[str, str]:
    province, client = entry[0]
    return (province or "", client or "")
