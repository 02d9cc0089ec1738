"""The campaign report (SPEC §12): JSON, or CSV per rule and period (`Accept: text/csv` or
`?format=csv`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.api.schemas import CampaignReport
from services.rewards.domain.report import DEFAULT_UPLIFT_METRIC
from services.rewards.notices import NotifyCounts
from services.rewards.usecases import report
from shared.api_auth import RequireCampaignReader
from shared.api_deps import TimeZone
from shared.auth import Principal
from shared.heavy import HEAVY_RESPONSES, heavy, statement_bounded, with_client
from shared.http import problems, reject_unknown_query_params
from shared.period_params import period_param

router = APIRouter(
    prefix="/v1",
    tags=["reports"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 422),
)
# At most ENGAGE_HEAVY_MAX_PER_SERVICE reports and simulations at once, one per key (SPEC §15).
ReportReader = Annotated[Principal, heavy("rewards", "report", RequireCampaignReader)]


def _bounded_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return statement_bounded(request.app.state)


# The report's use case opens its own units of work: each under the API's statement timeout.
BoundedSessions = Annotated[async_sessionmaker[AsyncSession], Depends(_bounded_sessions)]
DayQuery = Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="A local day, YYYY-MM-DD")


def _notify(request: Request) -> NotifyCounts | None:
    counts: NotifyCounts | None = getattr(request.app.state, "notify_counts", None)
    return counts


@router.get(
    "/campaigns/{campaign_id}/report",
    response_model=CampaignReport,
    response_model_by_alias=True,
    summary="Campaign report: per rule and period, people, grants, money, budget use, notices, "
    "the funnel and the holdout's uplift (JSON, or CSV with Accept: text/csv or ?format=csv)",
    description="Bounded (SPEC §15): one of the expensive requests — 429 with Retry-After when "
    "this replica already runs ENGAGE_HEAVY_MAX_PER_SERVICE of them or this key "
    "ENGAGE_HEAVY_MAX_PER_KEY; a client that disconnects cancels the work and its queries.",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}, **HEAVY_RESPONSES},
)
async def campaign_report(
    request: Request,
    campaign_id: Annotated[str, Path(pattern=r"^cmp_[0-9a-f]{12}$", description="cmp_…")],
    sessions: BoundedSessions,
    reader: ReportReader,
    tz: TimeZone,
    notify: Annotated[NotifyCounts | None, Depends(_notify)],
    first: Annotated[str | None, Query(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
    last: Annotated[str | None, Query(alias="to", pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
    metric: Annotated[
        str,
        Query(
            pattern=r"^[a-z][a-z0-9_]{0,39}$",
            description="The month metric the uplift compares (next period)",
        ),
    ] = DEFAULT_UPLIFT_METRIC,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    asked = report.ReportRequest(
        campaign_id,
        None if first is None else period_param("from", first),
        None if last is None else period_param("to", last),
        metric,
    )
    work = report.campaign_report(
        sessions,
        asked,
        reader,
        tz,
        datetime.now(UTC),
        None if notify is None else notify.campaign,
    )
    doc = await with_client(request, "rewards", work)
    if format == "csv" or (format is None and accept is not None and "text/csv" in accept):
        return Response(report.report_csv(doc), media_type="text/csv; charset=utf-8")
    return CampaignReport.model_validate(doc)
