"""Business KPIs (SPEC §12): a day's or a month's figures, totals or broken down."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from services.scoring.api.schemas import DayStats, MonthStats
from services.scoring.domain.periods import local_day
from services.scoring.domain.stats import Breakdown
from services.scoring.usecases.stats_reads import read_day_stats, read_month_stats
from shared.api_auth import RequireViewer
from shared.api_deps import SessionDep, TimeZone
from shared.http import problems, reject_unknown_query_params
from shared.period_params import period_param

router = APIRouter(
    prefix="/v1/stats",
    tags=["stats"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 422),
)

STATS_DESCRIPTION = """Business KPIs (SPEC §12, glossary docs/metrics.md#business-kpis),
kept with the aggregates in the same transaction — never recomputed from users at read time.

`by` breaks the figures down (repeat it for both): `by=province` — one item per province
(a user's province in a month is that of the group they sent most messages to; `unknown`
without group messages); `by=client` — one item per client (`all`, `pc`, `mobile`, `sms`;
in a client's item `active_users` counts users with ≥ 1 message from that client, and
`messages`, `online_hours`, `sessions` are that client's; new users, check-ins and lifecycle
counts are per user, so they are null there). Without `by`: one item, every user once.

422 for a malformed or impossible period; 404 `period_not_found` for a period in the future."""

ByQuery = Annotated[
    list[Breakdown] | None,
    Query(description="Break down by `province` and/or `client` (repeatable)."),
]


@router.get(
    "/day/{day}",
    response_model=DayStats,
    summary="A local day's business KPIs (active and new users, messages, online hours, ...)",
    description=STATS_DESCRIPTION,
)
async def get_day_stats(
    day: Annotated[str, Path(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-11-03"])],
    session: SessionDep,
    tz: TimeZone,
    _: RequireViewer,
    by: ByQuery = None,
) -> dict[str, Any]:
    local = period_param("day", day)
    items = await read_day_stats(session, local, set(by or ()), local_day(datetime.now(tz), tz))
    return {"day": day, "by": sorted(set(by or ())), "items": items}


@router.get(
    "/month/{month}",
    response_model=MonthStats,
    summary="A local month's business KPIs, lifecycle counts and DAU/MAU",
    description=STATS_DESCRIPTION,
)
async def get_month_stats(
    month: Annotated[str, Path(pattern=r"^\d{4}-\d{2}$", examples=["2026-11"])],
    session: SessionDep,
    tz: TimeZone,
    _: RequireViewer,
    by: ByQuery = None,
) -> dict[str, Any]:
    first = period_param("month", month)
    today = local_day(datetime.now(tz), tz)
    days, items = await read_month_stats(session, first, set(by or ()), today)
    return {"month": month, "by": sorted(set(by or ())), "days_counted": days, "items": items}
