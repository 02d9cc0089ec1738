"""Broadcasts (SPEC §6): created by a campaign owner, approved by another principal with the
approver role, then fanned out at a paced rate inside the send window."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from services.notify.api.deps import Scoring, Sessions
from services.notify.api.schemas import Broadcast, BroadcastBody
from services.notify.domain.broadcast import BroadcastDraft
from services.notify.store.broadcasts import BroadcastRow
from services.notify.usecases import broadcasts
from shared.api_auth import RequireApprover, RequireCampaignOwner, RequireCampaignReader
from shared.api_deps import TimeZone
from shared.http import problems, reject_unknown_query_params

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
) -> BroadcastRow:
    draft = BroadcastDraft(**body.model_dump())
    return await broadcasts.create_broadcast(sessions, draft, owner.key_id, scoring)


@router.get("/{broadcast_id}", response_model=Broadcast, summary="A broadcast and its counts")
async def get_broadcast(
    broadcast_id: BroadcastId, sessions: Sessions, _: RequireCampaignReader
) -> BroadcastRow:
    return await broadcasts.get_broadcast(sessions, broadcast_id)


@router.post(
    "/{broadcast_id}:approve",
    response_model=Broadcast,
    summary="Approve (not by its creator): every recipient is queued at a paced time",
)
async def approve_broadcast(
    broadcast_id: BroadcastId,
    sessions: Sessions,
    approver: RequireApprover,
    tz: TimeZone,
    scoring: Scoring,
) -> BroadcastRow:
    return await broadcasts.approve_broadcast(sessions, scoring, broadcast_id, approver.key_id, tz)


@router.post(
    "/{broadcast_id}:cancel",
    response_model=Broadcast,
    summary="Cancel; messages not yet sent are suppressed",
)
async def cancel_broadcast(
    broadcast_id: BroadcastId, sessions: Sessions, owner: RequireCampaignOwner
) -> BroadcastRow:
    return await broadcasts.cancel_broadcast(sessions, broadcast_id, owner.key_id)
