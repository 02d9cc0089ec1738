"""Broadcasts (SPEC §6): created by a campaign owner, approved by another principal with the
approver role, then fanned out at a paced rate inside the send window."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from services.notify.api.schemas import Broadcast, BroadcastBody
from services.notify.domain.policy import Policy
from services.notify.domain.templates import TemplateError, render
from services.notify.segments import recipients
from services.notify.store import broadcasts
from services.notify.store import notifications as store
from shared.api_auth import RequireApprover, RequireCampaignOwner, RequireCampaignReader
from shared.api_deps import SessionDep, TimeZone, UnitOfWork
from shared.errors import ValidationFailed
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
    body: BroadcastBody, session: UnitOfWork, owner: RequireCampaignOwner, request: Request
) -> dict[str, Any]:
    text = await store.template_text(session, body.template, body.channel, body.locale)
    if text is None:
        raise ValidationFailed(
            f"template: no template '{body.template}' for {body.channel}", code="unknown_template"
        )
    try:
        render(text, body.params)
    except TemplateError as exc:
        raise ValidationFailed(str(exc), code="invalid_params") from None
    if body.segment.kind != "list" and request.app.state.scoring is None:
        raise ValidationFailed(
            f"segment: kind '{body.segment.kind}' needs scoring (NOTIFY_SCORING_URL)",
            code="segment_unavailable",
        )
    return await broadcasts.create(session, body.model_dump(), owner.key_id)


@router.get("/{broadcast_id}", response_model=Broadcast, summary="A broadcast and its counts")
async def get_broadcast(
    broadcast_id: BroadcastId, session: SessionDep, _: RequireCampaignReader
) -> dict[str, Any]:
    return await broadcasts.get(session, broadcast_id)


@router.post(
    "/{broadcast_id}:approve",
    response_model=Broadcast,
    summary="Approve (not by its creator): every recipient is queued at a paced time",
)
async def approve_broadcast(
    broadcast_id: BroadcastId,
    session: UnitOfWork,
    approver: RequireApprover,
    tz: TimeZone,
    request: Request,
) -> dict[str, Any]:
    policies = await store.policies(session)
    current = await broadcasts.get(session, broadcast_id)
    policy = policies.get(current["category"]) or Policy(current["category"])
    users = await recipients(current["segment"], request.app.state.scoring)
    return await broadcasts.approve(
        session, broadcast_id, approver.key_id, users, policy, policies, datetime.now(UTC), tz
    )


@router.post(
    "/{broadcast_id}:cancel",
    response_model=Broadcast,
    summary="Cancel; messages not yet sent are suppressed",
)
async def cancel_broadcast(
    broadcast_id: BroadcastId, session: UnitOfWork, owner: RequireCampaignOwner
) -> dict[str, Any]:
    return await broadcasts.cancel(session, broadcast_id, owner.key_id)
