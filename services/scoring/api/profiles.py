"""Weight profiles: readable by viewers, changed by admins — the live `default` only with a
second principal's approval — every change audited (usecases/profiles.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from services.scoring.api.schemas import Profile, WeightsBody
from services.scoring.domain.vitality import Weights
from services.scoring.store import profiles
from services.scoring.usecases import profiles as profiles_uc
from shared.api_auth import RequireAdmin, RequireApprover, RequireViewer
from shared.api_deps import SessionDep, UnitOfWork
from shared.http import problems, reject_unknown_query_params

router = APIRouter(
    prefix="/v1/profiles",
    tags=["profiles"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 409, 422),
)
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


@router.get("", response_model=list[Profile], summary="All weight profiles")
async def list_profiles(session: SessionDep, _: RequireViewer) -> list[dict[str, Any]]:
    return await profiles.profiles(session)


@router.get(
    "/{name}", response_model=Profile, summary="One weight profile, with any pending change"
)
async def get_profile(name: Name, session: SessionDep, _: RequireViewer) -> dict[str, Any]:
    return await profiles_uc.read(session, name)


@router.put(
    "/{name}",
    response_model=Profile,
    responses={202: {"model": Profile, "description": "A change of `default`, pending approval"}},
    summary="Create or change a weight profile; a change of the live `default` waits for a "
    "second principal (202, `pending`)",
)
async def put_profile(
    name: Name, body: WeightsBody, session: UnitOfWork, admin: RequireAdmin, response: Response
) -> dict[str, Any]:
    weights = Weights(body.w_growth, body.w_activity, body.w_bonus)
    status, doc = await profiles_uc.change(session, name, weights, admin.key_id)
    response.status_code = status
    return doc


@router.post(
    "/{name}:approve",
    response_model=Profile,
    summary="Apply the pending change of a profile — by an approver who did not propose it",
)
async def approve_profile(
    name: Name, session: UnitOfWork, approver: RequireApprover
) -> dict[str, Any]:
    return await profiles_uc.approve(session, name, approver.key_id)


@router.post("/{name}:reject", response_model=Profile, summary="Drop the pending change")
async def reject_profile(
    name: Name, session: UnitOfWork, approver: RequireApprover
) -> dict[str, Any]:
    return await profiles_uc.reject(session, name, approver.key_id)


@router.delete(
    "/{name}",
    status_code=204,
    summary="Delete a weight profile (never `default`, the live one: 409)",
)
async def delete_profile(name: Name, session: UnitOfWork, admin: RequireAdmin) -> Response:
    await profiles_uc.delete(session, name, admin.key_id)
    return Response(status_code=204)
