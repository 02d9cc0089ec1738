"""Broadcasts (SPEC §6): created by a campaign owner, approved by another principal with the
approver role, then fanned out at a paced rate inside the send window."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from services.notify.api.deps import Scoring, Sessions
from services.notify.api.schemas import (
    ApprovedBroadcast,
    Broadcast,
    BroadcastBody,
    BroadcastPreview,
    RecipientPage,
)
from services.notify.domain.broadcast import BroadcastDraft
from services.notify.usecases import broadcasts
from shared.api_auth import RequireApprover, RequireCampaignOwner, RequireCampaignReader
from shared.api_deps import TimeZone
from shared.http import problems, reject_unknown_query_params
from shared.pagination import PageParams, single_text

router = APIRouter(
    prefix="/v1/broadcasts",
    tags=["broadcasts"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 409, 422, 503),
)
BroadcastId = Annotated[int, Path(ge=1, le=2**62)]


@router.post("", response_model=Broadcast, status_code=201, summary="Create (pending approval)")
async def create_broadcast(
    body: BroadcastBody, sessions: Sessions, owner: RequireCampaignOwner, scoring: Scoring
) -> Broadcast:
    draft = BroadcastDraft(**body.model_dump())
    return Broadcast.of(await broadcasts.create_broadcast(sessions, draft, owner, scoring))


@router.get("/{broadcast_id}", response_model=Broadcast, summary="A broadcast and its counts")
async def get_broadcast(
    broadcast_id: BroadcastId, sessions: Sessions, reader: RequireCampaignReader
) -> Broadcast:
    return Broadcast.of(await broadcasts.get_broadcast(sessions, broadcast_id, reader))


@router.get(
    "/{broadcast_id}/preview",
    response_model=BroadcastPreview,
    summary="Rendered text per channel and locale, the recipient count and a sample",
)
async def preview_broadcast(
    broadcast_id: BroadcastId,
    sessions: Sessions,
    reader: RequireCampaignReader,
    tz: TimeZone,
    scoring: Scoring,
) -> BroadcastPreview:
    preview = await broadcasts.preview_broadcast(sessions, scoring, broadcast_id, reader, tz)
    return BroadcastPreview.of(preview)


@router.get(
    "/{broadcast_id}/recipients",
    response_model=RecipientPage,
    summary="Its recipients by user id (once approved, with their notifications)",
)
async def broadcast_recipients(
    broadcast_id: BroadcastId,
    sessions: Sessions,
    reader: RequireCampaignReader,
    scoring: Scoring,
    page: PageParams,
) -> dict[str, Any]:
    key = page.after(single_text)
    after = None if key is None else str(key[0])
    items = await broadcasts.broadcast_recipients(
        sessions, scoring, broadcast_id, reader, page.limit, after
    )
    return {"items": items, "next_cursor": page.next_cursor(items, lambda r: [r.user_id])}


@router.post(
    "/{broadcast_id}:approve",
    response_model=ApprovedBroadcast,
    summary="Approve (not by its creator): every recipient is queued at a paced time; echoes "
    "the texts and recipients approved",
)
async def approve_broadcast(
    broadcast_id: BroadcastId,
    sessions: Sessions,
    approver: RequireApprover,
    tz: TimeZone,
    scoring: Scoring,
) -> ApprovedBroadcast:
    row, approved = await broadcasts.approve_broadcast(
        sessions, scoring, broadcast_id, approver, tz
    )
    return ApprovedBroadcast(
        **Broadcast.of(row).model_dump(), approved=BroadcastPreview.of(approved)
    )


@router.post(
    "/{broadcast_id}:cancel",
    response_model=Broadcast,
    summary="Cancel; messages not yet sent are suppressed",
)
async def cancel_broadcast(
    broadcast_id: BroadcastId, sessions: Sessions, owner: RequireCampaignOwner
) -> Broadcast:
    return Broadcast.of(await broadcasts.cancel_broadcast(sessions, broadcast_id, owner))
