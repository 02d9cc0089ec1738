"""The grants ledger, read, revoked (SPEC §5) and fulfilled (SPEC §11), and settlement on
demand."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query

from services.rewards.api.campaigns import period_label
from services.rewards.api.deps import RequireFulfiller, Sessions, SettlerDep
from services.rewards.api.schemas import Fulfil, Grant, Revoke, SettlementRunResult
from services.rewards.domain.fulfilment import FulfilmentReport, fulfilment_view
from services.rewards.store import ledger
from services.rewards.usecases import campaigns
from services.rewards.usecases import fulfil as fulfilments
from services.rewards.usecases import revoke as revocation
from shared.api_auth import RequireAdmin, RequireCampaignOwner, RequireCampaignReader
from shared.api_deps import SessionDep, TimeZone, UserIdQuery
from shared.http import problems, reject_unknown_query_params
from shared.pagination import Page, PageParams, single_int

router = APIRouter(
    prefix="/v1",
    tags=["grants"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 409, 422),
)


def local_today(tz: ZoneInfo) -> date:
    """Grants are overdue after their fulfil-by day in the service's time zone."""
    return datetime.now(tz).date()


def shown(grant: dict[str, Any], today: date) -> dict[str, Any]:
    """A grant as readers see it: with the fulfilment it has on `today` (overdue or not)."""
    view = fulfilment_view(grant["status"], grant["fulfilment_status"], grant["fulfil_by"], today)
    return {**grant, "fulfilment": view}


@router.get(
    "/grants",
    response_model=Page[Grant],
    summary="Grants of the key's team's campaigns (every team's for admin), oldest first, filtered",
)
async def list_grants(
    session: SessionDep,
    reader: RequireCampaignReader,
    page: PageParams,
    tz: TimeZone,
    campaign_id: Annotated[str | None, Query(pattern=r"^cmp_[0-9a-f]{12}$")] = None,
    user_id: UserIdQuery = None,
    rule_id: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9_\-]{0,39}$")] = None,
    period: Annotated[
        str | None, Query(pattern=r"^(\d{4}(-\d{2}(-\d{2})?|-W\d{2})?|campaign)$")
    ] = None,
    status: Annotated[
        str | None, Query(pattern=r"^(granted|budget_exhausted|revoked|held|excluded)$")
    ] = None,
    fulfilment: Annotated[
        str | None,
        Query(
            pattern=r"^(pending|fulfilled|failed|overdue)$",
            description="As the grant's `fulfilment` reads today: `overdue` lists the broken "
            "promises (granted, not fulfilled, past fulfil_by)",
        ),
    ] = None,
) -> dict[str, Any]:
    if period is not None:
        period_label("period", period)
    today = local_today(tz)
    filters = ledger.GrantFilters(
        campaign_id, user_id, rule_id, period, status, fulfilment, today=today
    )
    after = page.after(single_int)
    items = await campaigns.list_grants(
        session, filters, reader, page.limit, None if after is None else int(after[0])
    )
    return {
        "items": [shown(g, today) for g in items],
        "next_cursor": page.next_cursor(items, lambda i: [i["grant_id"]]),
    }


GrantId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/grants/{grant_id}", response_model=Grant, summary="One grant with its explanation")
async def get_grant(
    grant_id: GrantId, session: SessionDep, reader: RequireCampaignReader, tz: TimeZone
) -> dict[str, Any]:
    return shown(await campaigns.owned_grant(session, grant_id, reader), local_today(tz))


@router.post(
    "/grants/{grant_id}:fulfil",
    response_model=Grant,
    summary="Report a granted grant's reward fulfilled (with the crediting system's reference) "
    "or failed (with a reason); the same report again is a no-op, a different one after a "
    "final status is 409",
)
async def fulfil_grant(
    grant_id: GrantId, body: Fulfil, sessions: Sessions, _: RequireFulfiller, tz: TimeZone
) -> dict[str, Any]:
    report = FulfilmentReport(body.status, body.reference, body.reason, datetime.now(UTC))
    return shown(await fulfilments.fulfil_grant(sessions, grant_id, report), local_today(tz))


@router.post(
    "/grants/{grant_id}:revoke",
    response_model=Grant,
    summary="Revoke a granted grant not yet fulfilled (a recorded state change; its budget is "
    "released) — by the campaign's team or admin",
)
async def revoke_grant(
    grant_id: GrantId, body: Revoke, sessions: Sessions, owner: RequireCampaignOwner, tz: TimeZone
) -> dict[str, Any]:
    grant = await revocation.revoke_grant(sessions, grant_id, body.reason, owner, datetime.now(UTC))
    return shown(grant, local_today(tz))


@router.post(
    "/settlements:run",
    response_model=SettlementRunResult,
    summary="Settle every due period now (the timer does the same); 503 while metrics lag; "
    "a period that fails is listed under `failed` and the others settle",
    responses=problems(503),
)
async def run_settlements(settler: SettlerDep, _: RequireAdmin) -> dict[str, Any]:
    run = await settler.run_once()
    return {
        "settled": [
            {
                "campaign_id": s.campaign_id,
                "rule_id": s.rule_id,
                "period": s.period,
                "version": s.version,
                "seconds": s.seconds,
                "grants": s.grants,
            }
            for s in run.settled
        ],
        "already_settled": run.already_settled,
        "waiting": run.waiting,
        "failed": [asdict(f) for f in run.failed],
    }
