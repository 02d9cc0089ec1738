"""The grants ledger, read and revoked (SPEC §5), and settlement on demand."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from services.rewards.api.deps import Sessions, SettlerDep
from services.rewards.api.schemas import Grant, Revoke, SettlementRunResult
from services.rewards.domain.periods import CAMPAIGN_PERIOD
from services.rewards.store import ledger
from services.rewards.usecases import revoke as revocation
from shared.api_auth import RequireAdmin, RequireCampaignOwner, RequireCampaignReader
from shared.api_deps import SessionDep, UserIdQuery
from shared.errors import NotFound
from shared.http import problems, reject_unknown_query_params
from shared.pagination import Page, PageParams, single_int
from shared.period_params import period_param

router = APIRouter(
    prefix="/v1",
    tags=["grants"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 409, 422),
)


@router.get("/grants", response_model=Page[Grant], summary="Grants, oldest first, filtered")
async def list_grants(
    session: SessionDep,
    _: RequireCampaignReader,
    page: PageParams,
    campaign_id: Annotated[str | None, Query(pattern=r"^cmp_[0-9a-f]{12}$")] = None,
    user_id: UserIdQuery = None,
    rule_id: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9_\-]{0,39}$")] = None,
    period: Annotated[str | None, Query(pattern=r"^(\d{4}-\d{2}(-\d{2})?|campaign)$")] = None,
    status: Annotated[str | None, Query(pattern=r"^(granted|budget_exhausted|revoked)$")] = None,
) -> dict[str, Any]:
    if period is not None and period != CAMPAIGN_PERIOD:
        period_param("period", period)
    filters = ledger.GrantFilters(campaign_id, user_id, rule_id, period, status)
    after = page.after(single_int)
    items = await ledger.grants_page(
        session, filters, page.limit, None if after is None else int(after[0])
    )
    return {"items": items, "next_cursor": page.next_cursor(items, lambda i: [i["grant_id"]])}


GrantId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/grants/{grant_id}", response_model=Grant, summary="One grant with its explanation")
async def get_grant(
    grant_id: GrantId, session: SessionDep, _: RequireCampaignReader
) -> dict[str, Any]:
    grant = await ledger.grant_by_id(session, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id}", code="grant_not_found")
    return grant


@router.post(
    "/grants/{grant_id}:revoke",
    response_model=Grant,
    summary="Revoke a granted grant (a recorded state change; its budget is released)",
)
async def revoke_grant(
    grant_id: GrantId, body: Revoke, sessions: Sessions, owner: RequireCampaignOwner
) -> dict[str, Any]:
    return await revocation.revoke_grant(
        sessions, grant_id, body.reason, owner.key_id, datetime.now(UTC)
    )


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
        "failed": [asdict(f) for f in run.failed],
    }
