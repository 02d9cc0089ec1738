"""A user's timeline in rewards (SPEC §11): their grants, newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.rewards.api.grants import local_today, shown
from services.rewards.api.schemas import TimelineGrant
from services.rewards.usecases.timeline import user_timeline
from shared.api_auth import RequireCampaignReader
from shared.api_deps import SessionDep, TimeZone, UserIdPath
from shared.http import problems, reject_unknown_query_params
from shared.pagination import Page, PageParams, single_int

router = APIRouter(
    prefix="/v1",
    tags=["care"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 422),
)


@router.get(
    "/users/{user_id}/timeline",
    response_model=Page[TimelineGrant],
    summary="The user's grants, newest first, with explanation, status and fulfilment; 404 "
    "when rewards has neither a grant nor a metric value of the user",
)
async def get_timeline(
    user_id: UserIdPath, session: SessionDep, _: RequireCampaignReader, page: PageParams,
    tz: TimeZone,
) -> dict[str, Any]:  # fmt: skip
    after = page.after(single_int)
    items = await user_timeline(
        session, user_id, page.limit, None if after is None else int(after[0])
    )
    today = local_today(tz)
    return {
        "items": [shown(g, today) for g in items],
        "next_cursor": page.next_cursor(items, lambda i: [i["grant_id"]]),
    }
