"""Review hold and exclusions (SPEC §10, §14): held periods listed for an approver, flagged
first, then released or their subjects excluded; per-campaign exclusion lists."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends

from services.rewards.api.campaigns import CampaignId, PeriodLabel, period_label
from services.rewards.api.deps import Sessions
from services.rewards.api.grants import local_today, shown
from services.rewards.api.schemas import (
    Excluded,
    ExcludeSubjects,
    Exclusions,
    HeldGrant,
    PutExclusions,
    Released,
)
from services.rewards.domain import exclusions
from services.rewards.domain.periods import CAMPAIGN_PERIOD, label_days
from services.rewards.domain.review import period_days
from services.rewards.store import campaigns, ledger
from services.rewards.usecases import campaigns as owned
from services.rewards.usecases import review
from shared.api_auth import RequireApprover, RequireCampaignReader
from shared.api_deps import SessionDep, TimeZone, UnitOfWork
from shared.http import problems, reject_unknown_query_params
from shared.pagination import Page, PageParams, is_int

router = APIRouter(
    prefix="/v1",
    tags=["review"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 409, 422),
)


def _held_key(key: list[Any]) -> bool:
    """(0 flagged / 1 not, grant id)."""
    return len(key) == 2 and key[0] in (0, 1) and is_int(key[0]) and is_int(key[1])


@router.get(
    "/campaigns/{campaign_id}/periods/{period}/held",
    response_model=Page[HeldGrant],
    summary="A period's grants held for review: flagged groups and users first, each with the "
    "flags and their reasons",
)
async def list_held(
    campaign_id: CampaignId,
    period: PeriodLabel,
    session: SessionDep,
    reader: RequireCampaignReader,
    page: PageParams,
    tz: TimeZone,
) -> dict[str, Any]:
    period_label("period", period)
    doc = await owned.get_campaign(session, campaign_id, reader)
    if period == CAMPAIGN_PERIOD:  # the window's days, of the version that settled it
        version = doc["live_version"] or doc["versions"][-1]["version"]
        definition = await campaigns.version_definition(session, campaign_id, version)
        days = definition.window.days(tz)
    else:
        days = period_days(period, label_days(period)[0])
    after = page.after(_held_key)
    rows = await ledger.held_page(
        session,
        campaign_id,
        period,
        days,
        page.limit,
        None if after is None else (int(after[0]), int(after[1])),
    )
    today = local_today(tz)
    return {
        "items": [{**shown(r, today), "flagged": bool(r["flags"])} for r in rows],
        "next_cursor": page.next_cursor(rows, lambda r: [r["flag_rank"], r["grant_id"]]),
    }


@router.post(
    "/campaigns/{campaign_id}/periods/{period}:release",
    response_model=Released,
    summary="Publish a period's held grants (once; again is a no-op) — by an approver who "
    "neither authored nor submitted the campaign version",
)
async def release_period(
    campaign_id: CampaignId,
    period: PeriodLabel,
    sessions: Sessions,
    approver: RequireApprover,
    tz: TimeZone,
) -> dict[str, Any]:
    period_label("period", period)
    return await review.release_period(
        sessions, campaign_id, period, approver, datetime.now(UTC), tz
    )


@router.post(
    "/campaigns/{campaign_id}/periods/{period}:exclude",
    response_model=Excluded,
    summary="Exclude users or groups from a held period with a reason: their held grants are "
    "never published — by an approver who neither authored nor submitted the version",
)
async def exclude_subjects(
    campaign_id: CampaignId,
    period: PeriodLabel,
    body: ExcludeSubjects,
    sessions: Sessions,
    approver: RequireApprover,
) -> dict[str, Any]:
    period_label("period", period)
    subjects = exclusions.Exclusions(frozenset(body.user_ids), frozenset(body.group_ids))
    return await review.exclude_subjects(
        sessions, campaign_id, period, subjects, body.reason, approver, datetime.now(UTC)
    )


@router.get(
    "/campaigns/{campaign_id}/exclusions",
    response_model=Exclusions,
    summary="The users and groups that never win in this campaign",
)
async def get_exclusions(
    campaign_id: CampaignId, session: SessionDep, reader: RequireCampaignReader
) -> dict[str, Any]:
    return await review.get_exclusions(session, campaign_id, reader)


@router.put(
    "/campaigns/{campaign_id}/exclusions",
    response_model=Exclusions,
    summary="Replace the exclusion lists (audited with the reason); checked at every "
    "evaluation, settlement and release from now on — by an approver who neither wrote nor "
    "submitted any version of the campaign",
)
async def put_exclusions(
    campaign_id: CampaignId,
    body: PutExclusions,
    session: UnitOfWork,
    editor: RequireApprover,
) -> dict[str, Any]:
    lists = exclusions.Exclusions(frozenset(body.user_ids), frozenset(body.group_ids))
    return await review.put_exclusions(session, campaign_id, lists, body.reason, editor)
