"""The grants ledger, read and revoked (SPEC §5), and settlement on demand."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from services.rewards.api.schemas import Grant, GrantPage, Revoke, SettlementRunResult
from services.rewards.domain.periods import CAMPAIGN_PERIOD
from services.rewards.settler import Settler
from services.rewards.store import ledger
from shared.api_auth import RequireAdmin, RequireCampaignOwner, RequireCampaignReader
from shared.api_deps import SessionDep, UnitOfWork
from shared.audit import audit
from shared.errors import Conflict, NotFound
from shared.http import problems, reject_unknown_query_params
from shared.pagination import decode_cursor, encode_cursor, single_int
from shared.period_params import period_param

router = APIRouter(
    prefix="/v1",
    tags=["grants"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 409, 422),
)
Ident = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:@+\-]{1,64}$")]


@router.get("/grants", response_model=GrantPage, summary="Grants, oldest first, filtered")
async def list_grants(
    session: SessionDep,
    _: RequireCampaignReader,
    campaign_id: Annotated[str | None, Query(pattern=r"^cmp_[0-9a-f]{12}$")] = None,
    user_id: Ident = None,
    rule_id: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9_\-]{0,39}$")] = None,
    period: Annotated[str | None, Query(pattern=r"^(\d{4}-\d{2}(-\d{2})?|campaign)$")] = None,
    status: Annotated[str | None, Query(pattern=r"^(granted|budget_exhausted|revoked)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    filters = {
        k: v
        for k, v in {
            "campaign_id": campaign_id,
            "user_id": user_id,
            "rule_id": rule_id,
            "period": period,
            "status": status,
        }.items()
        if v is not None
    }
    if period is not None and period != CAMPAIGN_PERIOD:
        period_param("period", period)
    after = decode_cursor(cursor, single_int)[0] if cursor else None
    items = await ledger.grants_page(session, filters, limit, after)
    next_cursor = encode_cursor([items[-1]["grant_id"]]) if len(items) == limit else None
    return {"items": items, "next_cursor": next_cursor}


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
    grant_id: GrantId, body: Revoke, session: UnitOfWork, owner: RequireCampaignOwner
) -> dict[str, Any]:
    before = await ledger.grant_by_id(session, grant_id)
    if before is None:
        raise NotFound(f"no grant {grant_id}", code="grant_not_found")
    await ledger.lock_campaign_grants(session, before["campaign_id"])
    revoked = await ledger.revoke(
        session, "grant_id = :id", {"id": grant_id}, body.reason, datetime.now(UTC)
    )
    if not revoked:
        raise Conflict(
            f"grant {grant_id} is {before['status']}; only granted grants can be revoked",
            code="not_revocable",
        )
    after = revoked[0]
    await audit(
        session, owner.key_id, "grant.revoke", f"campaign:{after['campaign_id']}", before, after
    )
    ledger.Recorded(rows=revoked).count()
    return after


@router.post(
    "/settlements:run",
    response_model=SettlementRunResult,
    summary="Settle every due period now (the timer does the same); 503 while metrics lag; "
    "a period that fails is listed under `failed` and the others settle",
    responses=problems(503),
)
async def run_settlements(request: Request, _: RequireAdmin) -> dict[str, Any]:
    settler: Settler = request.app.state.settler
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
