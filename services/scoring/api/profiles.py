"""Weight profiles: readable by viewers, changed by admins, every change audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from services.scoring.api.schemas import Profile, WeightsBody
from services.scoring.domain.vitality import Weights
from services.scoring.store import profiles
from shared.api_auth import RequireAdmin, RequireViewer
from shared.api_deps import SessionDep, UnitOfWork
from shared.errors import NotFound
from shared.http import problems, reject_unknown_query_params

router = APIRouter(
    prefix="/v1/profiles",
    tags=["profiles"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 422),
)
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


@router.get("", response_model=list[Profile], summary="All weight profiles")
async def list_profiles(session: SessionDep, _: RequireViewer) -> list[dict[str, Any]]:
    return await profiles.profiles(session)


@router.get("/{name}", response_model=Profile, summary="One weight profile")
async def get_profile(name: Name, session: SessionDep, _: RequireViewer) -> dict[str, Any]:
    for p in await profiles.profiles(session):
        if p["name"] == name:
            return p
    raise NotFound(f"no weight profile named '{name}'")


@router.put("/{name}", response_model=Profile, summary="Create or change a weight profile")
async def put_profile(
    name: Name, body: WeightsBody, session: UnitOfWork, admin: RequireAdmin
) -> dict[str, Any]:
    _, after = await profiles.save_profile(
        session, name, Weights(body.w_growth, body.w_activity, body.w_bonus), admin.key_id
    )
    return after
